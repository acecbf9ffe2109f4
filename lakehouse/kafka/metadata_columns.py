"""The Kafka metadata columns every bronze row carries, beside its decoded fields."""

from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.kafka.reader import RawBatch

KAFKA_COLUMNS = (
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_kafka_key",
    "_ingested_at",
)


def with_kafka_columns(
    decoded: pa.Table, raw: RawBatch, row_index: pa.Array, ingested_at: datetime
) -> pa.Table:
    """The decoded rows plus the Kafka metadata columns of the messages they came from."""
    n = decoded.num_rows
    # row_index is ascending: with every message decoded it is 0..n-1 and needs no take.
    every_message = n == len(raw)

    def column(values: pa.Array, kind: pa.DataType) -> pa.Array:
        array = values.cast(kind)
        return array if every_message else array.take(row_index)

    timestamps = column(raw.timestamps_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    columns = {
        "_kafka_topic": pa.repeat(pa.scalar(raw.topic, pa.string()), n),
        "_kafka_partition": column(raw.partitions, pa.int32()),
        "_kafka_offset": column(raw.offsets, pa.int64()),
        "_kafka_timestamp": timestamps.cast(pa.timestamp("us", tz="UTC")),
        "_kafka_key": column(raw.keys, pa.binary()),
        "_ingested_at": pa.repeat(pa.scalar(ingested_at, pa.timestamp("us", tz="UTC")), n),
    }
    table = decoded
    for name, array in columns.items():
        table = table.append_column(name, array)
    return table


def bronze_schema(decoded: pa.Schema) -> pa.Schema:
    """The bronze table schema for rows decoded as `decoded`: its fields, then the Kafka ones."""
    empty = RawBatch(topic="")
    rows = with_kafka_columns(
        decoded.empty_table(), empty, pa.array([], pa.int64()), datetime.now(UTC)
    )
    return rows.schema
