"""Apply a writer schema's safe changes to an Iceberg table, as a compare-and-set.

One writer schema per schema change: the changes are staged in one `update_schema()` (which
asserts the schema id it started from) with a table property recording which writer schema
caused the new Iceberg schema, and committed; a concurrent change makes the commit fail, and
the writer schema is resolved again against the table as it is then. The schema asset and
a bronze run that meets a writer schema first both come through here.
"""

import json
import logging
import random
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, ValidationError
from pyiceberg.table import Table
from pyiceberg.table.update.schema import UpdateSchema

from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.errors import CommitConflictError, SchemaEvolutionError
from lakehouse.iceberg.catalog import retry_locked
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.schema.resolve import Change, Resolution, historic_names, resolve

log = logging.getLogger(__name__)

SOURCES_PROPERTY = "lakehouse.schema.sources"


@dataclass(frozen=True)
class Source:
    """The writer schema behind one Iceberg schema of a table, and who applied it."""

    subject: str
    version: int | None
    schema_id: int
    applied_by: str
    applied_at: str

    def label(self) -> str:
        version = f"v{self.version}" if self.version is not None else "version ?"
        return f"{self.subject} {version} (schema id {self.schema_id})"


@dataclass(frozen=True)
class Evolution:
    """The table after `evolve`, the resolution against the table before, what was applied."""

    table: Table
    resolution: Resolution
    applied: tuple[Change, ...]
    schema_id_before: int

    @property
    def schema_id(self) -> int:
        return self.table.schema().schema_id


def resolve_against(table: Table, writer: WriterSchema, reserved: Collection[str]) -> Resolution:
    """`writer` resolved against the table's current schema and every name its fields had."""
    names = historic_names(table.schemas().values())
    return resolve(writer.parsed, table.schema(), names, reserved=reserved)


def evolve(
    catalog: Catalog,
    identifier: str,
    writer: WriterSchema,
    *,
    subject: str,
    version: int | None,
    applied_by: str,
    reserved: Collection[str] = (),
    max_attempts: int = 12,
) -> Evolution:
    """Apply `writer`'s safe changes to the table, unless they are there already.

    Nothing is changed when the writer schema has an incompatible change (the resolution says
    which); the caller's policy decides. Raises CommitConflictError after `max_attempts` lost
    races, SchemaEvolutionError if pyiceberg refuses a change the resolver took for safe.
    """
    for attempt in range(1, max_attempts + 1):
        table = retry_locked(lambda: catalog.load_table(identifier))
        resolution = resolve_against(table, writer, reserved)
        before = table.schema().schema_id
        if not resolution.compatible or not resolution.changes:
            return Evolution(table, resolution, (), before)
        source = Source(subject, version, writer.schema_id, applied_by, _now())
        try:
            table = _commit(table, resolution.changes, source)
        except CommitFailedException as exc:
            log.info("%s: schema change lost a race (attempt %d): %s", identifier, attempt, exc)
            time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
            continue
        log.info(
            "%s: schema %d → %d for %s: %s",
            identifier,
            before,
            table.schema().schema_id,
            source.label(),
            "; ".join(map(str, resolution.changes)),
        )
        return Evolution(table, resolution, resolution.changes, before)
    raise CommitConflictError(f"{identifier}: schema change lost {max_attempts} races")


def schema_sources(table: Table) -> dict[int, Source]:
    """Iceberg schema id → the writer schema that caused it (schemas this project changed)."""
    raw = table.properties.get(SOURCES_PROPERTY)
    if not raw:
        return {}
    try:
        return {int(k): Source(**v) for k, v in json.loads(raw).items()}
    except (ValueError, TypeError) as exc:
        log.warning("%s: unreadable %s (%s)", table.name(), SOURCES_PROPERTY, exc)
        return {}


def _commit(table: Table, changes: tuple[Change, ...], source: Source) -> Table:
    tx = cas_transaction(table)
    try:
        with tx.update_schema() as update:
            for change in changes:
                _stage(update, change)
    except (ValidationError, ValueError) as exc:
        raise SchemaEvolutionError(f"{table.name()}: schema change refused: {exc}") from exc
    sources = {str(k): vars(v) for k, v in schema_sources(table).items()}
    sources[str(tx.table_metadata.current_schema_id)] = vars(source)
    tx.set_properties({SOURCES_PROPERTY: json.dumps(sources, separators=(",", ":"))})
    return tx.commit_transaction()


def _stage(update: UpdateSchema, change: Change) -> None:
    if change.kind == "added":
        update.add_column(change.path, change.field_type, required=False)  # type: ignore[arg-type]
    elif change.kind == "promoted":
        update.update_column(change.path, field_type=change.field_type)
    elif change.kind == "renamed":
        update.rename_column(change.path, change.new_name)  # type: ignore[arg-type]
    elif change.kind == "made_optional":
        update.make_column_optional(change.path)
    else:
        raise SchemaEvolutionError(f"not a change this project applies: {change}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
