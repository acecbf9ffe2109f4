"""Commit failure cases on a real SQLite catalog: unknown outcomes, locks, maintenance."""

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import CommitTableResponse, Table

from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import COMMIT_ID, commit_batch, committed_offsets

TABLE, TOPIC = "bronze.t", "t"


def batch(start: int, end: int, partition: int = 0) -> pa.Table:
    return pa.table(
        {
            "id": [f"{partition}-{o}" for o in range(start, end)],
            "_kafka_partition": pa.array([partition] * (end - start), pa.int32()),
            "_kafka_offset": pa.array(range(start, end), pa.int64()),
        }
    )


def commit(catalog: SqlCatalog, start: int, end: int, **kw: Any):
    return commit_batch(catalog, TABLE, TOPIC, batch(start, end), {0: start}, {0: end}, **kw)


def ids(catalog: SqlCatalog) -> list[str]:
    return catalog.load_table(TABLE).scan().to_arrow()["id"].to_pylist()


class FlakyCatalog(SqlCatalog):
    """A real SQL catalog whose commit raises once, after (`landed`) or before committing."""

    def __init__(self, *args: Any, landed: bool, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.landed = landed
        self.failures_left = 0  # armed by the test once the table exists

    def commit_table(self, table: Table, requirements: Any, updates: Any) -> CommitTableResponse:
        if self.failures_left and not self.landed:
            self.failures_left -= 1
            raise ConnectionResetError("lost the connection before the swap")
        response = super().commit_table(table, requirements, updates)
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionResetError("lost the response after the swap")
        return response


def flaky(tmp_path: Path, landed: bool) -> FlakyCatalog:
    cat = FlakyCatalog(
        "lakehouse",
        uri=f"sqlite:///{tmp_path}/c.db",
        warehouse=tmp_path.as_uri(),
        landed=landed,
    )
    ensure_table(cat, TABLE, batch(0, 1).schema)
    cat.failures_left = 1
    return cat


def plain(tmp_path: Path, **query: str) -> SqlCatalog:
    extra = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return SqlCatalog(
        "lakehouse", uri=f"sqlite:///{tmp_path}/c.db{extra}", warehouse=tmp_path.as_uri()
    )


@pytest.mark.parametrize("landed", [True, False])
def test_unknown_outcome_is_looked_up_not_retried_blindly(tmp_path: Path, landed: bool) -> None:
    cat = flaky(tmp_path, landed)
    commit_batch(cat, TABLE, TOPIC, batch(0, 0), {0: 0}, {0: 0})  # no-op, no commit
    outcome = commit(cat, 0, 5)
    assert sorted(ids(cat)) == [f"0-{o}" for o in range(5)]  # exactly once either way
    assert outcome.rows_written == 5
    assert outcome.attempts == (1 if landed else 2)  # found after the error, or retried
    table = cat.load_table(TABLE)
    assert committed_offsets(table, TOPIC) == {0: 5}
    ours = [s for s in table.metadata.snapshots if s.summary.get(COMMIT_ID) == outcome.commit_id]
    assert len(ours) == 1 and ours[0].snapshot_id == outcome.snapshot_id
    # Every data file a snapshot references still exists (nothing deleted after the error).
    for path in table.inspect.files()["file_path"].to_pylist():
        assert Path(path.removeprefix("file://")).exists()


def test_locked_catalog_database_waits_within_budget(tmp_path: Path) -> None:
    cat = plain(tmp_path, timeout="0.05")  # let SQLite give up fast so our retry is exercised
    ensure_table(cat, TABLE, batch(0, 1).schema)
    commit(cat, 0, 3)
    held = threading.Event()

    def hold_lock() -> None:
        conn = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(1.5)
        conn.execute("COMMIT")
        conn.close()

    locker = threading.Thread(target=hold_lock)
    locker.start()
    held.wait()
    started = time.monotonic()
    outcome = commit(cat, 3, 6)
    locker.join()
    assert time.monotonic() - started >= 1.0  # it waited for the lock
    assert outcome.rows_written == 3
    assert sorted(ids(cat)) == [f"0-{o}" for o in range(6)]


def test_offsets_survive_overwrite_and_snapshot_expiry(tmp_path: Path) -> None:
    cat = plain(tmp_path)
    ensure_table(cat, TABLE, batch(0, 1).schema)
    for start in range(0, 30, 10):
        commit(cat, start, start + 10)
    table = cat.load_table(TABLE)
    table.overwrite(table.scan().to_arrow())  # a rewrite, as compaction does
    table = cat.load_table(TABLE)
    assert table.current_snapshot().summary.get(COMMIT_ID) is None  # summaries are not inherited
    assert committed_offsets(table, TOPIC) == {0: 30}
    current = table.current_snapshot().snapshot_id
    old = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id != current]
    table.maintenance.expire_snapshots().by_ids(old).commit()
    fresh = plain(tmp_path).load_table(TABLE)  # a new reader
    assert [s.snapshot_id for s in fresh.metadata.snapshots] == [current]
    assert committed_offsets(fresh, TOPIC) == {0: 30}
    # ... and ingestion carries on from them without duplicates.
    assert commit(cat, 20, 35).rows_written == 5
    assert sorted(ids(cat)) == sorted(f"0-{o}" for o in range(35))


def test_expire_older_than_keeps_offsets(tmp_path: Path) -> None:
    cat = plain(tmp_path)
    ensure_table(cat, TABLE, batch(0, 1).schema)
    commit(cat, 0, 4)
    commit(cat, 4, 8)
    table = cat.load_table(TABLE)
    table.maintenance.expire_snapshots().older_than(datetime.now(UTC) + timedelta(days=1)).commit()
    assert committed_offsets(cat.load_table(TABLE), TOPIC) == {0: 8}
