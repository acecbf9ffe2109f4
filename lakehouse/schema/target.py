"""A bronze run's decode target: each writer schema resolved against the table once.

The first time a run meets a writer schema id it resolves it against the table; safe changes
are applied there and then (`evolve`: the same code the schema asset runs), so a batch never
waits for the schema sensor. Projections are cached per (writer schema id, table schema id):
the common case costs two dictionary lookups per batch. A writer schema the table cannot take
becomes an `incompatible-schema` refusal; the stream's policy decides what happens to its
messages (lakehouse/schema/policy.py).
"""

import functools
import threading
from collections.abc import Callable, Sequence

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.avro.decode import Projections
from lakehouse.avro.registry import schema_versions
from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.config import StreamSpec
from lakehouse.errors import DecodeError, SchemaEvolutionError
from lakehouse.iceberg.catalog import ensure_table, table_or_none
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS, bronze_schema
from lakehouse.schema.evolve import evolve, resolve_against, schema_sources
from lakehouse.schema.projection import Projection, projection
from lakehouse.schema.resolve import Resolution
from lakehouse.settings import Settings

INCOMPATIBLE = "incompatible-schema"

VersionLookup = Callable[[int], int | None]
"""The subject version of a writer schema id (None when the subject does not list it)."""


class BronzeTarget:
    """Projects each writer schema's rows onto the stream's bronze table (`decode.Target`)."""

    def __init__(
        self,
        catalog: Catalog,
        spec: StreamSpec,
        *,
        versions: VersionLookup,
        applied_by: str,
        table: Table | None = None,
        create: Callable[[WriterSchema], Table | None] | None = None,
    ) -> None:
        self._catalog = catalog
        self._spec = spec
        self._versions = versions
        self._applied_by = applied_by
        self._table = table
        self._create = create
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], tuple[Resolution, Projection | DecodeError | None]] = {}

    @property
    def table(self) -> Table | None:
        """The table as last loaded or changed by this target."""
        return self._table

    def projections(self, writers: Sequence[WriterSchema]) -> Projections:
        with self._lock:
            table = self._table or self._load_or_create(writers[0])
            for _ in range(5):
                pending = [w for w in writers if self._needs_changes(w, table)]
                if not pending:
                    break
                for writer in sorted(pending, key=lambda w: w.schema_id):
                    table = evolve(
                        self._catalog,
                        self._spec.table,
                        writer,
                        subject=self._spec.subject,
                        version=self._versions(writer.schema_id),
                        applied_by=self._applied_by,
                        reserved=KAFKA_COLUMNS,
                    ).table
            else:
                raise SchemaEvolutionError(f"{self._spec.table}: the schema keeps changing")
            self._table = table
            by_id = {w.schema_id: self._shape(w, table) for w in writers}
            return Projections(table.schema().schema_id, by_id)

    def resolution(self, writer: WriterSchema) -> Resolution:
        """The writer schema resolved against the table as this target last saw it."""
        with self._lock:
            table = self._table or self._load_or_create(writer)
            return self._entry(writer, table)[0]

    def _shape(self, writer: WriterSchema, table: Table) -> Projection | DecodeError:
        shape = self._entry(writer, table)[1]
        if shape is None:
            raise SchemaEvolutionError(f"{self._spec.table}: schema changes were not applied")
        return shape

    def _needs_changes(self, writer: WriterSchema, table: Table) -> bool:
        resolution = self._entry(writer, table)[0]
        return resolution.compatible and bool(resolution.changes)

    def _entry(
        self, writer: WriterSchema, table: Table
    ) -> tuple[Resolution, Projection | DecodeError | None]:
        """The resolution against `table`, and the projection once it needs no change."""
        key = (writer.schema_id, table.schema().schema_id)
        if key not in self._cache:
            resolution = resolve_against(table, writer, KAFKA_COLUMNS)
            shape: Projection | DecodeError | None = None
            if not resolution.compatible:
                shape = self._refusal(writer, resolution, table)
            elif not resolution.changes:
                shape = projection(
                    writer.arrow, resolution.table_names, table.schema(), reserved=KAFKA_COLUMNS
                )
            self._cache[key] = (resolution, shape)
        return self._cache[key]

    def _refusal(self, writer: WriterSchema, resolution: Resolution, table: Table) -> DecodeError:
        """`incompatible-schema`; or `unknown-schema-id` when the subject no longer lists the
        writer schema (a version deleted from it: not one of this stream's schemas)."""
        version = self._versions(writer.schema_id)
        if version is None:
            return DecodeError(
                "unknown-schema-id",
                f"schema id {writer.schema_id} is not a version of {self._spec.subject}",
            )
        message = incompatibility_message(self._spec, writer.schema_id, version, resolution, table)
        return DecodeError(INCOMPATIBLE, message)

    def _load_or_create(self, writer: WriterSchema) -> Table:
        """The table; made by `create` (e.g. from the subject's versions) when missing, or from
        `writer` when there is no `create` or it makes none."""
        table = table_or_none(self._catalog, self._spec.table)
        if table is None and self._create is not None:
            table = self._create(writer)
        if table is None:
            schema = bronze_schema(writer.arrow)
            table = ensure_table(self._catalog, self._spec.table, schema, self._spec.partition_by)
        return table


def incompatibility_message(
    spec: StreamSpec,
    schema_id: int,
    version: int | None,
    resolution: Resolution,
    table: Table,
) -> str:
    """Names the subject, both versions, the fields and each change."""
    writer = f"{spec.subject} v{version}" if version is not None else spec.subject
    schema = table.schema().schema_id
    followed = schema_sources(table).get(schema)
    table_side = f"Iceberg schema {schema}" + (
        f", from {followed.subject} v{followed.version}" if followed is not None else ""
    )
    return (
        f"{writer} (schema id {schema_id}) cannot be written to {spec.table} ({table_side}): "
        f"{resolution.reason()}"
    )


def registry_versions(settings: Settings, subject: str) -> VersionLookup:
    """A `VersionLookup` over the registry, one request per schema id."""

    @functools.lru_cache(maxsize=256)
    def lookup(schema_id: int) -> int | None:
        return max(schema_versions(settings, subject, schema_id), default=None)

    return lookup
