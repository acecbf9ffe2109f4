"""The dead-letter table: messages that could not be decoded, with their Kafka context.

One table for every stream, partitioned by topic and day. It is written through the same
`commit_batch` as the bronze tables and keeps its own `lakehouse.offsets.<topic>`, so it is
exactly once on its own. Commit it before the bronze table of the same batch: a crash in
between then re-reads the batch (bronze offsets did not move) and the dead letters already
committed are skipped.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import CommitOutcome, commit_batch

_TS = pa.timestamp("us", tz="UTC")

DEAD_LETTER_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
        pa.field("timestamp", _TS),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("schema_id", pa.int32()),
        pa.field("error_kind", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("ingested_at", _TS),
    ]
)
DEAD_LETTER_PARTITIONING: tuple[str, ...] = ("topic", "day(ingested_at)")
PARTITION_COLUMN = "partition"
OFFSET_COLUMN = "offset"


class MessageColumns(Protocol):
    """A batch of Kafka messages as Arrow columns (e.g. `lakehouse.kafka.reader.RawBatch`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partitions(self) -> pa.Array: ...
    @property
    def offsets(self) -> pa.Array: ...
    @property
    def timestamps_ms(self) -> pa.Array: ...
    @property
    def keys(self) -> pa.Array: ...
    @property
    def values(self) -> pa.Array: ...


def dead_letter_rows(
    batch: MessageColumns,
    failures: Iterable[Any],
    run_id: str,
    ingested_at: datetime,
) -> pa.Table:
    """Dead-letter rows for `failures`, each naming the message `index` in `batch`.

    A failure has `index`, `kind` and `message`, and optionally `schema_id`; a
    `(index, DecodeError)` pair works too.
    """
    unpacked = [_unpack(failure) for failure in failures]
    where = pa.array([index for index, _, _, _ in unpacked], pa.int64())
    n = len(unpacked)

    def taken(column: pa.Array, name: str) -> pa.Array:
        return column.take(where).cast(DEAD_LETTER_SCHEMA.field(name).type)

    timestamps = batch.timestamps_ms.take(where).cast(pa.int64())
    columns = {
        "topic": pa.repeat(pa.scalar(batch.topic, pa.string()), n),
        "partition": taken(batch.partitions, "partition"),
        "offset": taken(batch.offsets, "offset"),
        "timestamp": pc.multiply(timestamps, 1000).cast(_TS),
        "key": taken(batch.keys, "key"),
        "value": taken(batch.values, "value"),
        "schema_id": pa.array([schema_id for _, _, _, schema_id in unpacked], pa.int32()),
        "error_kind": pa.array([kind for _, kind, _, _ in unpacked], pa.string()),
        "error_message": pa.array([message for _, _, message, _ in unpacked], pa.string()),
        "run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
        "ingested_at": pa.repeat(pa.scalar(ingested_at, _TS), n),
    }
    return pa.table(columns, schema=DEAD_LETTER_SCHEMA)


def _unpack(failure: Any) -> tuple[int, str, str, int | None]:
    if hasattr(failure, "kind"):  # e.g. lakehouse.avro.decode.Failure (a NamedTuple)
        index, error = failure.index, failure
    else:
        index, error = failure
    return int(index), str(error.kind), str(error.message), getattr(error, "schema_id", None)


def ensure_dead_letter_table(catalog: Catalog, identifier: str) -> Table:
    """The dead-letter table, created on first use."""
    return ensure_table(catalog, identifier, DEAD_LETTER_SCHEMA, DEAD_LETTER_PARTITIONING)


def commit_dead_letters(
    catalog: Catalog,
    identifier: str,
    topic: str,
    rows: pa.Table,
    start_offsets: Mapping[int, int],
    next_offsets: Mapping[int, int],
) -> CommitOutcome:
    """Commit one batch's dead letters for `topic`, exactly once.

    The table only hears of batches that had dead letters, so its committed offsets may lag
    the batch start: gaps are allowed (nothing is there to lose), on every attempt against
    the table as it is then (another run's dead letters may land in between).
    """
    ensure_dead_letter_table(catalog, identifier)
    return commit_batch(
        catalog,
        identifier,
        topic,
        rows,
        start_offsets,
        next_offsets,
        partition_column=PARTITION_COLUMN,
        offset_column=OFFSET_COLUMN,
        gaps_allowed=True,
    )
