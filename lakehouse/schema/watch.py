"""What the schema sensor watches: the subject's latest version (one registry request, no
message bodies) and the bronze table's schema and pause record."""

from dataclasses import dataclass

from lakehouse.avro.registry import latest_version
from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.schema.pause import read_pause
from lakehouse.settings import Settings


@dataclass(frozen=True)
class SchemaState:
    """The subject's latest version against the table; `key` changes when any part does."""

    subject: str
    version: int | None
    schema_id: int | None
    table_schema_id: int | None
    paused_since: str | None
    policy: str

    @property
    def key(self) -> str:
        version = f"v{self.version}:{self.schema_id}" if self.version is not None else "none"
        table = f"schema{self.table_schema_id}" if self.table_schema_id is not None else "none"
        pause = f"paused@{self.paused_since}" if self.paused_since else "flowing"
        return f"{self.subject}@{version}/{table}/{self.policy}/{pause}"

    def describe(self) -> str:
        if self.version is None:
            return f"{self.subject} has no registered version"
        return f"{self.subject} v{self.version} (schema id {self.schema_id})"


def schema_state(settings: Settings, spec: StreamSpec) -> SchemaState:
    """One registry request and one catalog load; RegistryError if the registry fails."""
    latest = latest_version(settings, spec.subject)
    table = table_or_none(load_catalog(settings), spec.table)
    pause = read_pause(table) if table is not None else None
    return SchemaState(
        spec.subject,
        latest.version if latest else None,
        latest.schema_id if latest else None,
        table.schema().schema_id if table is not None else None,
        pause.since if pause else None,
        spec.schema_policy.on_incompatible,
    )
