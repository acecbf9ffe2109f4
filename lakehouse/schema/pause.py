"""A paused stream: recorded on its bronze table, re-checked on every sensor tick.

When the policy is `pause`, the run that meets a refused writer schema commits what comes
before it and records the pause as a table property (any engine and any tool can see it).
Whether the stream is still blocked is decided afresh each time from the registry, the table
and the declared policy, so fixing any of the three resumes the stream without touching the
record; the next run clears it.
"""

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from lakehouse.avro.registry import RegistrySchemaSource, SchemaSource
from lakehouse.config import StreamSpec
from lakehouse.errors import CommitConflictError, DecodeError
from lakehouse.iceberg.catalog import retry_locked
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS
from lakehouse.schema.evolve import resolve_against
from lakehouse.schema.target import VersionLookup, registry_versions
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

PAUSE_PROPERTY = "lakehouse.schema.paused"


@dataclass(frozen=True)
class Pause:
    """Where a stream stopped and why."""

    schema_id: int
    version: int | None
    stops: dict[int, int]  # partition → offset of its first refused message
    reason: str
    since: str

    def message(self, spec: StreamSpec) -> str:
        where = ", ".join(f"partition {p} at offset {o}" for p, o in sorted(self.stops.items()))
        return (
            f"stream {spec.name} is paused since {self.since} ({where}): {self.reason}. Every "
            "message before those offsets is committed; the rest wait in Kafka. To resume, "
            "change the table, the stream's schema.on_incompatible policy (dead_letter or "
            "new_table) or the registry: the next tick resumes it "
            "(docs/schema-evolution.md)."
        )


def read_pause(table: Table) -> Pause | None:
    """The pause recorded on the table, if any."""
    raw = table.properties.get(PAUSE_PROPERTY)
    if not raw:
        return None
    try:
        body = json.loads(raw)
        body["stops"] = {int(p): int(o) for p, o in body["stops"].items()}
        return Pause(**body)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("%s: unreadable %s (%s)", table.name(), PAUSE_PROPERTY, exc)
        return None


def record_pause(
    catalog: Catalog,
    identifier: str,
    schema_id: int,
    version: int | None,
    stops: dict[int, int],
    reason: str,
) -> Pause:
    """Record the pause on the table (a property-only commit, retried on conflicts)."""
    since = datetime.now(UTC).isoformat(timespec="seconds")
    pause = Pause(schema_id, version, dict(sorted(stops.items())), reason, since)
    body = asdict(pause)
    body["stops"] = {str(p): o for p, o in pause.stops.items()}
    text = json.dumps(body, separators=(",", ":"))
    _update(catalog, identifier, lambda tx: tx.set_properties({PAUSE_PROPERTY: text}))
    return pause


def clear_pause(catalog: Catalog, identifier: str) -> None:
    """Remove the pause record, if there is one."""

    def remove(tx: object) -> None:
        tx.remove_properties(PAUSE_PROPERTY)  # type: ignore[attr-defined]

    _update(catalog, identifier, remove, only_if_paused=True)


def blocking(
    pause: Pause, spec: StreamSpec, table: Table, schemas: SchemaSource, versions: VersionLookup
) -> str | None:
    """Why the stream is still paused, or None once resolved.

    Resolved when the policy is no longer `pause`, when the writer schema now resolves against
    the table (the table was changed), or when the subject no longer lists it (a version
    deleted from the registry: its messages become `unknown-schema-id` dead letters,
    replayable later).
    """
    if spec.schema_policy.on_incompatible != "pause":
        return None
    try:
        writer = schemas.writer_schema(pause.schema_id)
    except DecodeError:
        return None
    if versions(pause.schema_id) is None:
        return None
    resolution = resolve_against(table, writer, KAFKA_COLUMNS)
    if resolution.compatible:
        return None
    return pause.message(spec)


def paused_reason(settings: Settings, spec: StreamSpec, table: Table | None) -> str | None:
    """Why the stream is paused now, or None (never paused, or resolved since)."""
    pause = read_pause(table) if table is not None else None
    if pause is None or table is None:
        return None
    versions = registry_versions(settings, spec.subject)
    return blocking(pause, spec, table, RegistrySchemaSource(settings), versions)


def _update(
    catalog: Catalog,
    identifier: str,
    change: Callable[..., None],
    *,
    only_if_paused: bool = False,
    max_attempts: int = 12,
) -> None:
    for attempt in range(1, max_attempts + 1):
        table = retry_locked(lambda: catalog.load_table(identifier))
        if only_if_paused and PAUSE_PROPERTY not in table.properties:
            return
        tx = cas_transaction(table)
        change(tx)
        try:
            tx.commit_transaction()
            return
        except CommitFailedException:
            time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
    raise CommitConflictError(f"{identifier}: cannot update {PAUSE_PROPERTY}")
