"""The offset protocol against a real SQL catalog on SQLite (no fakes)."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from lakehouse.errors import OffsetGapError, SchemaEvolutionError
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import (
    COMMIT_ID,
    LAST_COMMIT_ID,
    CommitOutcome,
    commit_batch,
    committed_offsets,
    offsets_key,
    stage_files,
)

TABLE = "bronze.clicks"
TOPIC = "clicks"


def rows(ranges: dict[int, tuple[int, int]], **extra: list[object]) -> pa.Table:
    """One row per offset of each partition range, with an id unique across the topic."""
    parts: list[int] = []
    offsets: list[int] = []
    for p, (start, end) in sorted(ranges.items()):
        parts += [p] * (end - start)
        offsets += list(range(start, end))
    columns: dict[str, object] = {
        "id": [f"{p}-{o}" for p, o in zip(parts, offsets, strict=True)],
        "amount": pa.array([o * 10 for o in offsets], pa.int32()),
        "_kafka_partition": pa.array(parts, pa.int32()),
        "_kafka_offset": pa.array(offsets, pa.int64()),
    }
    columns.update(extra)
    return pa.table(columns)


def make_catalog(root: Path) -> SqlCatalog:
    root.mkdir(parents=True, exist_ok=True)
    return SqlCatalog(
        "lakehouse", uri=f"sqlite:///{root}/catalog.db", warehouse=(root / "wh").as_uri()
    )


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    cat = make_catalog(tmp_path)
    ensure_table(cat, TABLE, rows({0: (0, 1)}).schema)
    return cat


def commit(
    catalog: Catalog,
    ranges: dict[int, tuple[int, int]],
    data: pa.Table | None = None,
    *,
    staged: bool = False,
    table: Table | None = None,
) -> CommitOutcome:
    """Commit the rows of `ranges`; `staged` writes their files first (`stage_files`)."""
    data = rows(ranges) if data is None else data
    files = stage_files(catalog, TABLE, data, table) if staged else None
    assert files is not None or not staged
    return commit_batch(
        catalog,
        TABLE,
        TOPIC,
        data,
        {p: s for p, (s, _) in ranges.items()},
        {p: e for p, (_, e) in ranges.items()},
        staged=files,
        table=table,
    )


def ids(catalog: Catalog) -> list[str]:
    return sorted(catalog.load_table(TABLE).scan().to_arrow()["id"].to_pylist())


def test_commit_advances_rows_and_offsets_together(catalog: SqlCatalog) -> None:
    outcome = commit(catalog, {0: (0, 5), 1: (0, 3)})
    table = catalog.load_table(TABLE)
    assert outcome.rows_written == 8 and outcome.rows_skipped == 0
    assert outcome.offsets_before == {} and outcome.offsets_after == {0: 5, 1: 3}
    assert committed_offsets(table, TOPIC) == {0: 5, 1: 3}
    assert table.current_snapshot().snapshot_id == outcome.snapshot_id
    assert table.current_snapshot().summary[COMMIT_ID] == outcome.commit_id
    assert table.properties[LAST_COMMIT_ID] == outcome.commit_id
    assert outcome.data_files_added >= 1 and outcome.bytes_added > 0
    assert len(ids(catalog)) == 8


def test_recommitting_the_same_batch_is_a_no_op(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5)})
    snapshots = len(catalog.load_table(TABLE).metadata.snapshots)
    again = commit(catalog, {0: (0, 5)})
    assert again.already_committed and again.rows_written == 0 and again.rows_skipped == 5
    assert len(catalog.load_table(TABLE).metadata.snapshots) == snapshots  # no empty snapshot
    assert len(ids(catalog)) == 5


def test_overlapping_batch_keeps_only_new_rows(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5), 1: (0, 2)})
    outcome = commit(catalog, {0: (3, 9), 1: (0, 4)})
    assert outcome.rows_written == 4 + 2 and outcome.rows_skipped == 2 + 2
    assert committed_offsets(catalog.load_table(TABLE), TOPIC) == {0: 9, 1: 4}
    assert ids(catalog) == sorted([f"0-{o}" for o in range(9)] + [f"1-{o}" for o in range(4)])


def test_gap_raises_and_commits_nothing(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5)})
    before = catalog.load_table(TABLE).metadata_location
    with pytest.raises(OffsetGapError, match=r"\[0\] committed 5, batch starts 6"):
        commit(catalog, {0: (6, 9)})
    assert catalog.load_table(TABLE).metadata_location == before


def test_partition_without_offsets_accepts_any_start(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5)})
    outcome = commit(catalog, {1: (1000, 1002)})  # retention moved partition 1's start
    assert outcome.offsets_after == {0: 5, 1: 1002}


def test_offsets_only_advance_gives_an_empty_snapshot(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5)})
    empty = rows({0: (5, 5)})
    outcome = commit(catalog, {0: (5, 9)}, empty)  # e.g. all four were dead-lettered
    assert outcome.rows_written == 0 and outcome.snapshot_id is not None
    assert committed_offsets(catalog.load_table(TABLE), TOPIC) == {0: 9}
    assert outcome.data_files_added == 0


def test_rows_outside_the_range_are_a_programming_error(catalog: SqlCatalog) -> None:
    with pytest.raises(ValueError, match="outside the batch range"):
        commit_batch(catalog, TABLE, TOPIC, rows({0: (0, 5)}), {0: 0}, {0: 4})


def test_topics_keep_separate_offsets(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 5)})
    commit_batch(catalog, TABLE, "other", rows({0: (0, 2)}), {0: 0}, {0: 2})
    table = catalog.load_table(TABLE)
    assert committed_offsets(table, TOPIC) == {0: 5}
    assert committed_offsets(table, "other") == {0: 2}
    assert json.loads(table.properties[offsets_key("other")]) == {"0": 2}


def test_new_optional_column_evolves_in_the_same_commit(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 2)})
    data = rows({0: (2, 4)}, country=["de", "fr"])
    outcome = commit(catalog, {0: (2, 4)}, data)
    table = catalog.load_table(TABLE)
    assert outcome.schema_changed
    assert table.current_snapshot().snapshot_id == outcome.snapshot_id
    assert table.schema().find_field("country").optional
    got = table.scan().to_arrow().sort_by("id")
    assert got["country"].to_pylist() == [None, None, "de", "fr"]


def test_int_to_long_promotion(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 2)})
    data = rows({0: (2, 4)})
    data = data.set_column(1, "amount", data["amount"].cast(pa.int64()))
    commit(catalog, {0: (2, 4)}, data)
    assert str(catalog.load_table(TABLE).schema().find_field("amount").field_type) == "long"


def test_incompatible_change_raises_and_leaves_the_table(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 2)})
    before = catalog.load_table(TABLE).metadata_location
    data = rows({0: (2, 4)})
    data = data.set_column(1, "amount", pa.array(["a", "b"]))
    with pytest.raises(SchemaEvolutionError, match="amount"):
        commit(catalog, {0: (2, 4)}, data)
    table = catalog.load_table(TABLE)
    assert table.metadata_location == before
    assert committed_offsets(table, TOPIC) == {0: 2}


def test_ns_timestamps_are_written_as_us(catalog: SqlCatalog) -> None:
    data = rows({0: (0, 2)}, at=pa.array([1_000_000_123, 2_000_000_456], pa.timestamp("ns")))
    commit(catalog, {0: (0, 2)}, data)
    got = catalog.load_table(TABLE).scan().to_arrow()
    assert got.schema.field("at").type == pa.timestamp("us")


def test_commits_leave_the_retry_count_of_other_engines_alone(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path)
    cat.create_namespace("bronze")
    cat.create_table(TABLE, rows({0: (0, 1)}).schema)  # created elsewhere, default retries
    commit(cat, {0: (0, 3)})
    assert "commit.retry.num-retries" not in cat.load_table(TABLE).properties


def test_a_retry_count_of_zero_left_by_earlier_versions_is_removed(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path)
    cat.create_namespace("bronze")
    cat.create_table(TABLE, rows({0: (0, 1)}).schema, properties={"commit.retry.num-retries": "0"})
    commit(cat, {0: (0, 3)})
    table = cat.load_table(TABLE)
    assert "commit.retry.num-retries" not in table.properties
    assert committed_offsets(table, TOPIC) == {0: 3}


def test_fresh_reader_sees_everything(catalog: SqlCatalog, tmp_path: Path) -> None:
    commit(catalog, {0: (0, 3)})
    commit(catalog, {0: (3, 6)}, rows({0: (3, 6)}, note=["x", "y", "z"]))
    reader = make_catalog(tmp_path)  # a new catalog object, as another process would have
    table = reader.load_table(TABLE)
    assert committed_offsets(table, TOPIC) == {0: 6}
    assert table.scan().to_arrow().num_rows == 6


def data_file_paths(catalog: Catalog) -> set[str]:
    return {task.file.file_path for task in catalog.load_table(TABLE).scan().plan_files()}


def test_staged_files_are_committed_as_written(catalog: SqlCatalog) -> None:
    data = rows({0: (0, 5)})
    staged = stage_files(catalog, TABLE, data)
    assert staged is not None and staged.data_files
    outcome = commit_batch(catalog, TABLE, TOPIC, data, {0: 0}, {0: 5}, staged=staged)
    assert outcome.rows_written == 5
    assert data_file_paths(catalog) == {f.file_path for f in staged.data_files}
    assert ids(catalog) == [f"0-{o}" for o in range(5)]


def test_staged_files_of_trimmed_rows_are_not_committed(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 3)})  # another writer got offsets 0..2 in first
    data = rows({0: (0, 6)})
    staged = stage_files(catalog, TABLE, data)
    assert staged is not None
    outcome = commit_batch(catalog, TABLE, TOPIC, data, {0: 0}, {0: 6}, staged=staged)
    assert outcome.rows_written == 3 and outcome.rows_skipped == 3
    assert not data_file_paths(catalog) & {f.file_path for f in staged.data_files}
    assert ids(catalog) == sorted(f"0-{o}" for o in range(6))


def test_staged_files_of_an_older_schema_are_written_again(catalog: SqlCatalog) -> None:
    data = rows({0: (0, 2)})
    staged = stage_files(catalog, TABLE, data)
    assert staged is not None
    commit(catalog, {1: (0, 1)}, rows({1: (0, 1)}, note=["new column"]))  # schema changes
    outcome = commit_batch(catalog, TABLE, TOPIC, data, {0: 0}, {0: 2}, staged=staged)
    assert outcome.rows_written == 2
    assert not data_file_paths(catalog) & {f.file_path for f in staged.data_files}
    assert ids(catalog) == ["0-0", "0-1", "1-0"]


def test_rows_needing_a_new_column_are_not_staged(catalog: SqlCatalog) -> None:
    assert stage_files(catalog, TABLE, rows({0: (0, 2)}, note=["a", "b"])) is None
    assert stage_files(catalog, TABLE, rows({0: (0, 0)})) is None  # nothing to write


def test_a_stale_table_is_reloaded_and_nothing_is_lost(catalog: SqlCatalog) -> None:
    first = commit(catalog, {0: (0, 3)}, staged=True)
    assert first.latest is not None
    commit(catalog, {1: (0, 4)})  # another writer commits after ours: `latest` is stale now
    second = commit(catalog, {0: (3, 6)}, staged=True, table=first.latest)
    assert second.rows_written == 3 and second.conflicts == 1
    assert committed_offsets(catalog.load_table(TABLE), TOPIC) == {0: 6, 1: 4}
    assert ids(catalog) == sorted([f"0-{o}" for o in range(6)] + [f"1-{o}" for o in range(4)])


def test_a_stale_table_never_decides_a_batch_is_already_in(catalog: SqlCatalog) -> None:
    first = commit(catalog, {0: (0, 3)})
    stale = first.latest
    commit(catalog, {0: (3, 6)})
    # The stale view has 0..2 only; a batch 3..5 looks new there and a gap-free start 6
    # looks like a gap: both are decided again on the table as it is.
    again = commit_batch(catalog, TABLE, TOPIC, rows({0: (3, 6)}), {0: 3}, {0: 6}, table=stale)
    assert again.already_committed and again.rows_skipped == 3
    after = commit_batch(catalog, TABLE, TOPIC, rows({0: (6, 8)}), {0: 6}, {0: 8}, table=stale)
    assert after.rows_written == 2
    assert ids(catalog) == sorted(f"0-{o}" for o in range(8))


def test_the_latest_table_is_used_without_a_load(catalog: SqlCatalog) -> None:
    first = commit(catalog, {0: (0, 3)}, staged=True)
    second = commit(catalog, {0: (3, 6)}, staged=True, table=first.latest)
    assert second.conflicts == 0 and second.attempts == 1
    assert second.latest is not None
    assert second.latest.metadata_location == catalog.load_table(TABLE).metadata_location


def test_a_table_hearing_of_some_batches_only_accepts_gaps(catalog: SqlCatalog) -> None:
    commit(catalog, {0: (0, 2)})
    with pytest.raises(OffsetGapError):
        commit(catalog, {0: (5, 7)})
    later = commit_batch(
        catalog, TABLE, TOPIC, rows({0: (5, 7)}), {0: 5}, {0: 7}, gaps_allowed=True
    )
    assert later.rows_written == 2 and later.offsets_after == {0: 7}
    again = commit_batch(
        catalog, TABLE, TOPIC, rows({0: (5, 9)}), {0: 5}, {0: 9}, gaps_allowed=True
    )
    assert again.rows_written == 2 and again.rows_skipped == 2  # overlaps are still trimmed
    assert ids(catalog) == ["0-0", "0-1", "0-5", "0-6", "0-7", "0-8"]
