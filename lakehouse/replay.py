"""Replay a stream's dead letters into its bronze table, exactly once.

The chosen dead letters (not replayed yet, below the bronze table's committed offsets) are
decoded again with today's registry and table, through the same decode target as a bronze run
(safe changes applied inline). Those that decode are committed to bronze by
`iceberg.replayed.commit_replayed` (a compare-and-set that skips any (partition, offset) the
table already holds); then, in a second commit, the dead-letter table marks them replayed and
gives those that still fail their new reason. The ordering and why a crash or a concurrent run
neither loses nor duplicates: docs/schema-evolution.md#replaying-dead-letters.
"""

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog

from lakehouse.avro.decode import decode_values
from lakehouse.avro.registry import RegistrySchemaSource, SchemaSource
from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.iceberg.dead_letter_replays import (
    Key,
    Selection,
    StillFailing,
    mark,
    unreplayed,
    with_replay_columns,
)
from lakehouse.iceberg.dead_letters import OFFSET_COLUMN, PARTITION_COLUMN
from lakehouse.iceberg.replayed import below_offsets, commit_replayed
from lakehouse.kafka.metadata_columns import with_kafka_columns
from lakehouse.kafka.reader import RawBatch
from lakehouse.schema.projection import conform_rows
from lakehouse.schema.target import BronzeTarget, registry_versions
from lakehouse.settings import Settings


@dataclass
class ReplayReport:
    """What one replay did; `as_metadata()` is what the Dagster asset publishes."""

    stream: str
    topic: str
    table: str
    selected: int = 0
    not_below_offsets: int = 0  # dead letters bronze's offsets have not passed: left alone
    written: int = 0
    already_in_bronze: int = 0
    still_failing: dict[str, int] = field(default_factory=dict)
    marked: int = 0
    seconds: float = 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {
            "dead_letters_selected": self.selected,
            "written_to_bronze": self.written,
            "already_in_bronze": self.already_in_bronze,
            "still_failing": sum(self.still_failing.values()),
            "still_failing_by_kind": ", ".join(
                f"{k}: {n}" for k, n in sorted(self.still_failing.items())
            )
            or "-",
            "not_below_bronze_offsets": self.not_below_offsets,
            "dead_letters_marked": self.marked,
            "seconds": round(self.seconds, 3),
        }


def replay_dead_letters(
    settings: Settings,
    spec: StreamSpec,
    *,
    dead_letter_table: str,
    run_id: str,
    selection: Selection | None = None,
    catalog: Catalog | None = None,
    schemas: SchemaSource | None = None,
    before_commit: Callable[[int], None] | None = None,
    before_marking: Callable[[], None] | None = None,
) -> ReplayReport:
    """Decode the selected dead letters again; write those that decode to bronze exactly once
    and mark them replayed; give those that still fail their new reason.

    `before_commit(attempt)` and `before_marking()` are seams for tests that force an
    interleaving with another run (or stop between the two commits).
    """
    started = time.monotonic()
    report = ReplayReport(spec.name, spec.topic, spec.table)
    catalog = catalog if catalog is not None else load_catalog(settings)
    bronze = table_or_none(catalog, spec.table)
    if bronze is None or table_or_none(catalog, dead_letter_table) is None:
        return report  # nothing to replay, or nothing to replay into
    chosen = unreplayed(
        with_replay_columns(catalog, dead_letter_table), spec.topic, selection or Selection()
    )
    report.selected = chosen.num_rows
    below = below_offsets(
        chosen, committed_offsets(bronze, spec.topic), PARTITION_COLUMN, OFFSET_COLUMN
    )
    report.not_below_offsets = chosen.num_rows - below.num_rows
    schemas = schemas if schemas is not None else RegistrySchemaSource(settings)
    versions = registry_versions(settings, spec.subject)
    target = BronzeTarget(catalog, spec, versions=versions, applied_by=f"replay {run_id}")
    step = spec.batch.max_records
    for start in range(0, below.num_rows, step):
        raw = _messages(spec.topic, below.slice(start, step))
        decoded = decode_values(raw.values, schemas, target=target)
        rows = with_kafka_columns(decoded.table, raw, decoded.row_index, datetime.now(UTC))
        outcome = commit_replayed(
            catalog,
            spec.table,
            spec.topic,
            rows,
            run_id=run_id,
            conform=functools.partial(_conform, schema_id=decoded.target_version),
            before_commit=before_commit,
        )
        report.written += outcome.rows_written
        report.already_in_bronze += outcome.already_present
        replayed = set(_keys(raw, decoded.row_index.to_pylist()))
        failing: dict[Key, StillFailing] = {}
        for failure in decoded.failures:
            key = _keys(raw, [failure.index])[0]
            failing[key] = StillFailing(failure.kind, failure.message)
            report.still_failing[failure.kind] = report.still_failing.get(failure.kind, 0) + 1
        if before_marking is not None:
            before_marking()
        report.marked += mark(catalog, dead_letter_table, spec.topic, replayed, failing, run_id)
    report.seconds = time.monotonic() - started
    return report


def _conform(table: Any, rows: pa.Table, schema_id: int | None) -> pa.Table:
    return conform_rows(rows, table, schema_id)


def _messages(topic: str, dead: pa.Table) -> RawBatch:
    """The dead letters as the Kafka messages they were."""
    millis = pc.divide(dead["timestamp"].cast(pa.int64()), 1000)
    return RawBatch(
        topic,
        dead[PARTITION_COLUMN].combine_chunks().cast(pa.int32()),
        dead[OFFSET_COLUMN].combine_chunks().cast(pa.int64()),
        millis.combine_chunks() if isinstance(millis, pa.ChunkedArray) else millis,
        dead["key"].combine_chunks().cast(pa.large_binary()),
        dead["value"].combine_chunks().cast(pa.large_binary()),
    )


def _keys(raw: RawBatch, indexes: list[int]) -> list[Key]:
    return [(raw.partitions[i].as_py(), raw.offsets[i].as_py()) for i in indexes]
