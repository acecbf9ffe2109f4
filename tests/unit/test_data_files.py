"""Data files written for ingest commits: the same partitions, rows and statistics as
pyiceberg's own writer, on a real SQLite catalog and local warehouse."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import _dataframe_to_data_files

from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.data_files import write_data_files

DAY = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


def events(times: list[datetime | None]) -> pa.Table:
    n = len(times)
    return pa.table(
        {
            "event_id": pa.array([f"e{i}" for i in range(n)], pa.string()),
            "event_time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "amount": pa.array(range(n), pa.int64()),
        }
    )


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog(
        "lakehouse",
        uri=f"sqlite:///{tmp_path}/catalog.db",
        warehouse=(tmp_path / "wh").as_uri(),
    )


def summary(files: list) -> list[tuple[str, int, dict, dict]]:  # type: ignore[type-arg]
    """What matters of each file: partition, rows, column bounds (order-free)."""
    return sorted(
        (str(f.partition), f.record_count, dict(f.lower_bounds), dict(f.upper_bounds))
        for f in files
    )


@pytest.mark.parametrize(
    "times",
    [
        [DAY + timedelta(minutes=i) for i in range(10)],  # one day
        [DAY + timedelta(minutes=20 * i) for i in range(10)],  # crosses midnight
        [DAY, None, DAY + timedelta(days=3), None],  # a null partition value
    ],
    ids=["one-partition", "two-partitions", "null-partition"],
)
def test_partitioned_files_match_pyiceberg(catalog: SqlCatalog, times: list) -> None:  # type: ignore[type-arg]
    rows = events(times)
    schema = rows.schema.set(1, rows.schema.field(1).with_nullable(True))
    table = ensure_table(catalog, "bronze.events", schema, ["day(event_time)"])
    ours = write_data_files(table.io, table.metadata, rows)
    theirs = list(_dataframe_to_data_files(table.metadata, rows, table.io))
    assert summary(ours) == summary(theirs)
    assert len(ours) == len({t.date() if t else None for t in times})

    # committed, the files read back as exactly the rows
    with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
        for data_file in ours:
            append.append_data_file(data_file)
    back = catalog.load_table("bronze.events").scan().to_arrow().sort_by("event_id")
    assert back.to_pylist() == rows.sort_by("event_id").to_pylist()


def test_unpartitioned_and_empty(catalog: SqlCatalog) -> None:
    rows = events([DAY + timedelta(minutes=i) for i in range(5)])
    table = ensure_table(catalog, "bronze.flat", rows.schema, [])
    [only] = write_data_files(table.io, table.metadata, rows)
    assert only.record_count == 5
    assert str(only.partition) == "Record[]"
    assert write_data_files(table.io, table.metadata, rows.slice(0, 0)) == []


def test_writer_follows_a_schema_change(catalog: SqlCatalog) -> None:
    """A prepared writer is per table layout: after a new column, files carry it."""
    rows = events([DAY])
    table = ensure_table(catalog, "bronze.grows", rows.schema, [])
    write_data_files(table.io, table.metadata, rows)
    wider = rows.append_column("note", pa.array(["x"], pa.string()))
    with table.update_schema() as update:
        update.union_by_name(wider.schema)
    table = catalog.load_table("bronze.grows")
    [data_file] = write_data_files(table.io, table.metadata, wider)
    note_id = table.schema().find_field("note").field_id
    assert note_id in data_file.value_counts


def test_dictionaries_only_where_they_pay(catalog: SqlCatalog) -> None:
    import pyarrow.parquet as pq

    n = 5_000
    rows = pa.table(
        {
            "event_id": pa.array([f"event-{i:08d}" for i in range(n)], pa.string()),  # unique
            "event_time": pa.array([DAY] * n, pa.timestamp("us", tz="UTC")),
            "action": pa.array([("view", "click", "buy")[i % 3] for i in range(n)], pa.string()),
        }
    )
    table = ensure_table(catalog, "bronze.dictionaries", rows.schema, [])
    [written] = write_data_files(table.io, table.metadata, rows)
    with table.io.new_input(written.file_path).open() as stream:
        group = pq.ParquetFile(stream).metadata.row_group(0)
        encodings = {
            group.column(i).path_in_schema: group.column(i).encodings
            for i in range(group.num_columns)
        }
    assert "RLE_DICTIONARY" not in encodings["event_id"]
    assert "RLE_DICTIONARY" in encodings["action"]
    assert "RLE_DICTIONARY" in encodings["event_time"]  # one value: a dictionary of one
