"""The schema asset's work: every registered version of a stream's subject resolved against its
bronze table, their safe changes applied in version order (through `evolve`, as a bronze run
would inline), and a report of what changed, what cannot, and the table's schema history."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.avro.registry import SubjectVersion, subject_versions
from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.config import StreamSpec
from lakehouse.errors import DecodeError
from lakehouse.iceberg.catalog import ensure_table, load_catalog, table_or_none
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS, bronze_schema
from lakehouse.schema.evolve import SOURCES_PROPERTY, Source, evolve
from lakehouse.schema.history import HistoryEntry, caused_by, schema_history
from lakehouse.schema.pause import paused_reason
from lakehouse.schema.resolve import Change, ChangeKind
from lakehouse.schema.target import incompatibility_message
from lakehouse.settings import Settings


@dataclass(frozen=True)
class VersionCheck:
    """One subject version against the table: what this run applied, or why it cannot be."""

    version: int
    schema_id: int
    applied: tuple[Change, ...] = ()
    refused: str | None = None


@dataclass
class SchemaReport:
    """What `apply_subject` found and did; `as_metadata()` is what the asset publishes."""

    stream: str
    subject: str
    table: str
    policy: str
    latest: SubjectVersion | None = None
    versions: list[VersionCheck] = field(default_factory=list)
    table_schema_id: int | None = None
    latest_changes: tuple[Change, ...] = ()
    latest_applied_by: str = ""
    history: list[HistoryEntry] = field(default_factory=list)
    paused: str | None = None
    created_table: bool = False

    @property
    def refused(self) -> list[VersionCheck]:
        return [v for v in self.versions if v.refused is not None]

    @property
    def healthy(self) -> bool:
        """Every version fits the table and the stream is not paused."""
        return not self.refused and self.paused is None

    def fields(self, kind: ChangeKind) -> list[str]:
        """The latest version's changes of one kind, as 'path: detail'."""
        return [str(c) for c in self.latest_changes if c.kind == kind]

    def as_metadata(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "subject": self.subject,
            "subject_version": latest.version if latest else 0,
            "schema_id": latest.schema_id if latest else 0,
            "iceberg_schema_id": self.table_schema_id if self.table_schema_id is not None else -1,
            "policy": self.policy,
            "fields_added": _lines(self.fields("added")),
            "fields_promoted": _lines(self.fields("promoted")),
            "fields_renamed": _lines(self.fields("renamed")),
            "fields_made_optional": _lines(self.fields("made_optional")),
            "applied_by": self.latest_applied_by or "-",
            "applied_now": sum(len(v.applied) for v in self.versions),
            "incompatible_versions": _lines(
                [f"v{v.version} (schema id {v.schema_id}): {v.refused}" for v in self.refused]
            ),
            "paused": self.paused or "-",
            "table_created": self.created_table,
        }


def _lines(items: list[str]) -> str:
    return "\n".join(items) if items else "-"


def apply_subject(
    settings: Settings, spec: StreamSpec, *, applied_by: str, catalog: Catalog | None = None
) -> SchemaReport:
    """Resolve every live version of the subject against the bronze table and apply the safe
    changes (creating the table through `create_from_versions` if there is none yet)."""
    report = SchemaReport(spec.name, spec.subject, spec.table, spec.schema_policy.on_incompatible)
    versions = subject_versions(settings, spec.subject)
    catalog = catalog if catalog is not None else load_catalog(settings)
    if versions:
        report.latest = versions[-1]
        if table_or_none(catalog, spec.table) is None:
            create_from_versions(catalog, spec, versions, created_by=applied_by)
            report.created_table = True
    for registered in versions:
        report.versions.append(_check(catalog, spec, registered, applied_by))
    table = table_or_none(catalog, spec.table)
    if table is None:
        return report
    report.table_schema_id = table.schema().schema_id
    report.history = schema_history(table)
    report.paused = paused_reason(settings, spec, table)
    if report.latest is not None:
        mine = report.versions[-1]
        label = Source(spec.subject, mine.version, mine.schema_id, "", "").label()
        earlier = caused_by(report.history, label)
        if mine.applied:
            report.latest_changes, report.latest_applied_by = mine.applied, applied_by
        elif earlier is not None:
            report.latest_changes, report.latest_applied_by = earlier.changes, earlier.applied_by
    return report


def create_from_subject(
    settings: Settings, catalog: Catalog, spec: StreamSpec, *, created_by: str
) -> Table | None:
    """The bronze table, made from the stream's subject if it does not exist (None when it
    does not and the subject has no version yet)."""
    table = table_or_none(catalog, spec.table)
    if table is not None:
        return table
    versions = subject_versions(settings, spec.subject)
    return create_from_versions(catalog, spec, versions, created_by=created_by)


def create_from_versions(
    catalog: Catalog, spec: StreamSpec, versions: list[SubjectVersion], *, created_by: str
) -> Table | None:
    """The bronze table made from the oldest usable version, then evolved through the later
    ones in order: its schema history follows the subject's (a version the table cannot take
    is skipped; its policy applies when its messages come). Race-safe (`ensure_table`)."""
    usable = [(v, w) for v in versions if (w := _parsed(v)) is not None]
    if not usable:
        return None
    first, writer = usable[0]
    source = Source(spec.subject, first.version, first.schema_id, created_by, _now())
    ensure_table(
        catalog,
        spec.table,
        bronze_schema(writer.arrow),
        spec.partition_by,
        properties={SOURCES_PROPERTY: json.dumps({"0": vars(source)}, separators=(",", ":"))},
    )
    for registered, later in usable[1:]:
        evolve(
            catalog,
            spec.table,
            later,
            subject=spec.subject,
            version=registered.version,
            applied_by=created_by,
            reserved=KAFKA_COLUMNS,
        )
    return table_or_none(catalog, spec.table)


def _parsed(registered: SubjectVersion) -> WriterSchema | None:
    try:
        return registered.writer_schema()
    except DecodeError:
        return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _check(
    catalog: Catalog, spec: StreamSpec, registered: SubjectVersion, applied_by: str
) -> VersionCheck:
    try:
        writer = registered.writer_schema()
    except DecodeError as exc:
        return VersionCheck(registered.version, registered.schema_id, refused=exc.message)
    evolution = evolve(
        catalog,
        spec.table,
        writer,
        subject=spec.subject,
        version=registered.version,
        applied_by=applied_by,
        reserved=KAFKA_COLUMNS,
    )
    if not evolution.resolution.compatible:
        reason = incompatibility_message(
            spec, registered.schema_id, registered.version, evolution.resolution, evolution.table
        )
        return VersionCheck(registered.version, registered.schema_id, refused=reason)
    return VersionCheck(registered.version, registered.schema_id, applied=evolution.applied)
