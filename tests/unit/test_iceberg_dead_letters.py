"""The dead-letter table through the same exactly-once commit."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.transforms import DayTransform, IdentityTransform

from lakehouse.avro.decode import Failure as DecodeFailure
from lakehouse.errors import DecodeError
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.iceberg.dead_letters import (
    DEAD_LETTER_SCHEMA,
    commit_dead_letters,
    dead_letter_rows,
    ensure_dead_letter_table,
)
from lakehouse.kafka.reader import RawBatch

DLT = "bronze.dead_letters"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class Failure:
    index: int
    kind: str
    message: str
    schema_id: int | None = None


def messages(topic: str, start: int, end: int) -> RawBatch:
    n = end - start
    return RawBatch.of(
        topic,
        [0] * n,
        list(range(start, end)),
        [1_700_000_000_000 + i for i in range(n)],
        [b"k"] * n,
        [b"\x01bad"] * n,
    )


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())


def test_table_shape(catalog: SqlCatalog) -> None:
    table = ensure_dead_letter_table(catalog, DLT)
    assert table.schema().as_arrow().names == DEAD_LETTER_SCHEMA.names
    transforms = [type(f.transform) for f in table.spec().fields]
    assert transforms == [IdentityTransform, DayTransform]


def test_rows_carry_the_kafka_context(catalog: SqlCatalog) -> None:
    batch = messages("clicks", 10, 13)
    rows = dead_letter_rows(
        batch,
        [
            Failure(1, "bad-magic-byte", "first byte 0x01", None),
            (2, DecodeError("short-frame", "3 bytes")),
            DecodeFailure(0, "unknown-schema-id", "id 42", 42),
        ],
        "run-1",
        NOW,
    )
    assert rows.schema == DEAD_LETTER_SCHEMA
    first = rows.to_pylist()[0]
    assert first["offset"] == 11 and first["error_kind"] == "bad-magic-byte"
    assert first["timestamp"] == datetime.fromtimestamp(1_700_000_000.001, UTC)
    assert rows["error_kind"].to_pylist()[1] == "short-frame"
    assert rows.to_pylist()[2]["schema_id"] == 42 and rows.to_pylist()[2]["offset"] == 10


def test_exactly_once_with_sparse_batches_and_replays(catalog: SqlCatalog) -> None:
    first = messages("clicks", 0, 10)
    rows = dead_letter_rows(first, [Failure(3, "corrupt-datum", "x")], "r1", NOW)
    commit_dead_letters(catalog, DLT, "clicks", rows, {0: 0}, {0: 10})
    # batches 10..50 had no dead letters and never reached this table; 50..60 has two
    later = messages("clicks", 50, 60)
    rows = dead_letter_rows(
        later, [Failure(0, "empty-value", ""), Failure(9, "oversize", "")], "r2", NOW
    )
    assert commit_dead_letters(catalog, DLT, "clicks", rows, {0: 50}, {0: 60}).rows_written == 2
    again = commit_dead_letters(catalog, DLT, "clicks", rows, {0: 50}, {0: 60})  # replay
    assert again.already_committed
    table = catalog.load_table(DLT)
    assert committed_offsets(table, "clicks") == {0: 60}
    assert sorted(table.scan().to_arrow()["offset"].to_pylist()) == [3, 50, 59]
