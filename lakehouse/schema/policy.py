"""What a batch does with messages whose writer schema the table refused (`schema:
on_incompatible` in streams.yaml): stop before the first (`pause`), dead-letter them
(`dead_letter`: nothing to do here, they already are failures), or write them to a table of
their own subject version (`new_table`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog

from lakehouse.avro.decode import Failure, decode_values
from lakehouse.avro.registry import SchemaSource
from lakehouse.config import StreamSpec
from lakehouse.errors import ConfigError
from lakehouse.iceberg.catalog import ensure_table, retry_locked
from lakehouse.iceberg.commit import CommitOutcome, commit_batch
from lakehouse.kafka.metadata_columns import with_kafka_columns
from lakehouse.kafka.reader import RawBatch
from lakehouse.schema.target import INCOMPATIBLE, VersionLookup


def incompatible(failures: Sequence[Failure]) -> list[Failure]:
    """The failures that are refused writer schemas."""
    return [f for f in failures if f.kind == INCOMPATIBLE]


def first_incompatible(raw: RawBatch, failures: Sequence[Failure]) -> dict[int, int]:
    """Partition → offset of its first message whose writer schema was refused."""
    first: dict[int, int] = {}
    for failure in incompatible(failures):
        partition = raw.partitions[failure.index].as_py()
        offset = raw.offsets[failure.index].as_py()
        first[partition] = min(offset, first.get(partition, offset))
    return first


@dataclass(frozen=True)
class Cut:
    """A batch narrowed to the messages before a stop offset per partition."""

    rows: pa.Table
    failures: list[Failure]
    next_offsets: dict[int, int]


def cut_before(
    raw: RawBatch,
    rows: pa.Table,
    failures: Sequence[Failure],
    stops: dict[int, int],
    *,
    partition_column: str = "_kafka_partition",
    offset_column: str = "_kafka_offset",
) -> Cut:
    """Only what comes before `stops` ({partition: offset}) in each partition."""
    next_offsets = {p: min(n, stops[p]) if p in stops else n for p, n in raw.next_offsets.items()}
    keep = pa.array([True] * rows.num_rows, pa.bool_())
    for partition, stop in stops.items():
        other = pc.not_equal(rows[partition_column], partition)
        before = pc.less(rows[offset_column], stop)
        keep = pc.and_(keep, pc.or_(other, before))
    kept_failures = [
        f
        for f in failures
        if raw.offsets[f.index].as_py()
        < stops.get(raw.partitions[f.index].as_py(), raw.offsets[f.index].as_py() + 1)
    ]
    return Cut(rows.filter(keep), kept_failures, next_offsets)


def version_table(spec: StreamSpec, version: int) -> str:
    """The table of an incompatible subject version under `new_table`."""
    return f"{spec.table}__v{version}"


@dataclass(frozen=True)
class Routed:
    """What `route_to_version_tables` committed, and the failures left for the dead letters."""

    outcomes: list[CommitOutcome]
    failures: list[Failure]


def route_to_version_tables(
    catalog: Catalog,
    spec: StreamSpec,
    raw: RawBatch,
    failures: Sequence[Failure],
    schemas: SchemaSource,
    versions: VersionLookup,
    ingested_at: datetime,
    snapshot_properties: dict[str, str],
) -> Routed:
    """Commit the refused messages to `<table>__v<version>`, one table per subject version.

    Each such table hears only of some batches, so it keeps its own offsets with gaps allowed,
    like the dead letters, and is committed before the bronze table: a crash in between
    re-reads the batch and the table trims what it holds. A refused schema id the subject
    does not list stays a dead letter (no version to name a table after), as do datums of it
    that do not decode.
    """
    left = [f for f in failures if f.kind != INCOMPATIBLE]
    by_version: dict[int, list[Failure]] = {}
    for failure in incompatible(failures):
        version = versions(failure.schema_id) if failure.schema_id is not None else None
        if version is None:
            left.append(failure)
        else:
            by_version.setdefault(version, []).append(failure)
    outcomes = []
    for version, routed in sorted(by_version.items()):
        sub = subset(raw, [f.index for f in routed])
        decoded = decode_values(sub.values, schemas)
        left += [f._replace(index=routed[f.index].index) for f in decoded.failures]
        rows = with_kafka_columns(decoded.table, sub, decoded.row_index, ingested_at)
        identifier = version_table(spec, version)
        _ensure_version_table(catalog, identifier, rows.schema, spec)
        outcomes.append(
            commit_batch(
                catalog,
                identifier,
                spec.topic,
                rows,
                raw.start_offsets,
                raw.next_offsets,
                snapshot_properties=snapshot_properties,
                gaps_allowed=True,
            )
        )
    return Routed(outcomes, sorted(left, key=lambda f: f.index))


def subset(raw: RawBatch, indexes: Sequence[int]) -> RawBatch:
    """The messages at `indexes` of the batch, with the batch's offset range."""
    take = pa.array(indexes, pa.int64())
    return RawBatch(
        raw.topic,
        raw.partitions.take(take),
        raw.offsets.take(take),
        raw.timestamps_ms.take(take),
        raw.keys.take(take),
        raw.values.take(take),
        start_offsets=dict(raw.start_offsets),
        next_offsets=dict(raw.next_offsets),
    )


def _ensure_version_table(
    catalog: Catalog, identifier: str, schema: pa.Schema, spec: StreamSpec
) -> None:
    """Partitioned like the bronze table when its columns allow, else unpartitioned."""
    try:
        ensure_table(catalog, identifier, schema, spec.partition_by)
    except ConfigError:
        ensure_table(catalog, identifier, schema)


def version_tables(catalog: Catalog, spec: StreamSpec) -> list[str]:
    """The `<table>__v<N>` tables that exist for the stream (policy new_table), by version."""
    namespace, name = spec.table.rsplit(".", 1)
    found = []
    for identifier in retry_locked(lambda: catalog.list_tables(namespace)):
        table = identifier[-1]
        prefix, _, version = table.rpartition("__v")
        if prefix == name and version.isdigit():
            found.append((int(version), f"{namespace}.{table}"))
    return [identifier for _, identifier in sorted(found)]
