"""The dead-letter table: messages that could not be decoded, with their Kafka context.

One table for every stream, partitioned by topic and day. It is written through the same
`commit_batch` as the bronze tables and keeps its own `lakehouse.offsets.<topic>`, so it is
exactly once on its own. Commit it before the bronze table of the same batch: a crash in
between then re-reads the batch (bronze offsets did not move) and the dead letters already
committed are skipped.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import CommitOutcome, commit_batch, committed_offsets

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
    """A batch of Kafka messages column by column (e.g. `lakehouse.kafka.reader.RawBatch`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partitions(self) -> Sequence[int]: ...
    @property
    def offsets(self) -> Sequence[int]: ...
    @property
    def timestamps_ms(self) -> Sequence[int | None]: ...
    @property
    def keys(self) -> Sequence[bytes | None]: ...
    @property
    def values(self) -> Sequence[bytes | None]: ...


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
    columns: dict[str, list[Any]] = {name: [] for name in DEAD_LETTER_SCHEMA.names}
    for failure in failures:
        index, kind, message, schema_id = _unpack(failure)
        columns["topic"].append(batch.topic)
        columns["partition"].append(batch.partitions[index])
        columns["offset"].append(batch.offsets[index])
        ts = batch.timestamps_ms[index]
        columns["timestamp"].append(None if ts is None else ts * 1000)
        columns["key"].append(batch.keys[index])
        columns["value"].append(batch.values[index])
        columns["schema_id"].append(schema_id)
        columns["error_kind"].append(kind)
        columns["error_message"].append(message)
        columns["run_id"].append(run_id)
        columns["ingested_at"].append(ingested_at)
    return pa.table(
        {name: pa.array(columns[name], DEAD_LETTER_SCHEMA.field(name).type) for name in columns},
        schema=DEAD_LETTER_SCHEMA,
    )


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
    the batch start; the range is widened down to them (nothing is there to lose).
    """
    table = ensure_dead_letter_table(catalog, identifier)
    committed = committed_offsets(table, topic)
    start = {p: min(s, committed.get(p, s)) for p, s in start_offsets.items()}
    return commit_batch(
        catalog,
        identifier,
        topic,
        rows,
        start,
        next_offsets,
        partition_column=PARTITION_COLUMN,
        offset_column=OFFSET_COLUMN,
    )
