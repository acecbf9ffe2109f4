"""Replayed rows below a table's committed offsets: written once, offsets untouched, rows the
table holds or at/above its offsets never written; a concurrent commit makes it look again."""

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from lakehouse.iceberg.commit import committed_offsets
from lakehouse.iceberg.replayed import commit_replayed
from tests.unit.test_iceberg_commit import TABLE, TOPIC, commit, make_catalog, rows


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    from lakehouse.iceberg.catalog import ensure_table

    cat = make_catalog(tmp_path)
    ensure_table(cat, TABLE, rows({0: (0, 1)}).schema)
    return cat


def held(catalog: SqlCatalog) -> list[tuple[int, int]]:
    table = catalog.load_table(TABLE).scan().to_arrow()
    return sorted(
        zip(table["_kafka_partition"].to_pylist(), table["_kafka_offset"].to_pylist(), strict=True)
    )


def without(data: pa.Table, offsets: set[tuple[int, int]]) -> pa.Table:
    keep = [
        (p, o) not in offsets
        for p, o in zip(
            data["_kafka_partition"].to_pylist(), data["_kafka_offset"].to_pylist(), strict=True
        )
    ]
    return data.filter(pa.array(keep))


def test_gaps_below_the_offsets_are_filled_once(catalog: SqlCatalog) -> None:
    gaps = {(0, 3), (0, 4), (1, 2)}  # as if dead-lettered
    commit(catalog, {0: (0, 10), 1: (0, 5)}, without(rows({0: (0, 10), 1: (0, 5)}), gaps))
    replayed = rows({0: (3, 5), 1: (2, 3)})
    first = commit_replayed(catalog, TABLE, TOPIC, replayed, run_id="r1")
    assert (first.rows_written, first.already_present, first.above_offsets) == (3, 0, 0)
    assert held(catalog) == sorted({(0, o) for o in range(10)} | {(1, o) for o in range(5)})
    assert committed_offsets(catalog.load_table(TABLE), TOPIC) == {0: 10, 1: 5}
    again = commit_replayed(catalog, TABLE, TOPIC, replayed, run_id="r2")
    assert (again.rows_written, again.already_present, again.snapshot_id) == (0, 3, None)


def test_rows_at_or_above_the_offsets_are_left_to_normal_runs(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 4)}, without(rows({0: (0, 4)}), {(0, 2)}))
    outcome = commit_replayed(catalog, TABLE, TOPIC, rows({0: (2, 6), 1: (0, 1)}), run_id="r")
    assert (outcome.rows_written, outcome.already_present, outcome.above_offsets) == (1, 1, 3)
    assert held(catalog) == [(0, o) for o in range(4)]


def test_a_commit_in_between_makes_it_look_again(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 6)}, without(rows({0: (0, 6)}), {(0, 1), (0, 2)}))
    attempts: list[int] = []

    def other_replay(attempt: int) -> None:
        attempts.append(attempt)
        if attempt == 1:  # another replay writes (0, 1) between our look and our commit
            assert (
                commit_replayed(catalog, TABLE, TOPIC, rows({0: (1, 2)}), run_id="b").rows_written
                == 1
            )

    outcome = commit_replayed(
        catalog, TABLE, TOPIC, rows({0: (1, 3)}), run_id="a", before_commit=other_replay
    )
    assert attempts == [1, 2] and outcome.rows_written == 1 and outcome.already_present == 1
    assert held(catalog) == [(0, o) for o in range(6)]
