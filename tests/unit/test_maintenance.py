"""Compaction, expiry and orphan removal against a real SQL catalog (SQLite) in a temp dir."""

import datetime as dt
import decimal
import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    YearTransform,
)

from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.maintenance import (
    compact,
    expire_snapshots,
    remove_orphan_files,
    small_file_stats,
)
from lakehouse.iceberg.maintenance import compaction as compaction_module

TOPIC = "clicks"
OFFSETS_KEY = f"lakehouse.offsets.{TOPIC}"
BASE = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("kind", pa.string()),
        pa.field("day", pa.date32()),
        pa.field("amount", pa.decimal128(12, 3)),
        pa.field("payload", pa.binary()),
        pa.field("event_uuid", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("flag", pa.bool_()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("attrs", pa.map_(pa.string(), pa.int64())),
        pa.field(
            "device",
            pa.struct([pa.field("os", pa.string()), pa.field("version", pa.int32())]),
        ),
    ]
)


def rows(start: int, count: int) -> pa.Table:
    """`count` rows with ids from `start`; every nullable column has nulls."""
    ids = range(start, start + count)
    return pa.table(
        {
            "id": list(ids),
            "ts": [BASE + dt.timedelta(minutes=3 * i, microseconds=i) for i in ids],
            "kind": [None if i % 7 == 0 else ("view", "click", "buy")[i % 3] for i in ids],
            "day": [dt.date(2025, 1, 1) + dt.timedelta(days=i % 40) for i in ids],
            "amount": [None if i % 5 == 0 else decimal.Decimal(i) / 1000 for i in ids],
            "payload": [None if i % 6 == 0 else i.to_bytes(4, "big") for i in ids],
            "event_uuid": [str(uuid.UUID(int=i)) for i in ids],
            "score": [None if i % 4 == 0 else i / 3 for i in ids],
            "flag": [None if i % 9 == 0 else i % 2 == 0 for i in ids],
            "tags": [None if i % 8 == 0 else [f"t{i % 3}"] * (i % 3) for i in ids],
            "attrs": [None if i % 10 == 0 else [("a", i), ("b", -i)] for i in ids],
            "device": [
                None if i % 11 == 0 else {"os": ("ios", "android")[i % 2], "version": i % 17}
                for i in ids
            ],
        },
        schema=SCHEMA,
    )


@pytest.fixture()
def catalog(tmp_path: Path) -> SqlCatalog:
    cat = SqlCatalog(
        "test", uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=f"file://{tmp_path}/warehouse"
    )
    cat.create_namespace("bronze")
    return cat


def make_table(
    catalog: SqlCatalog, *, partitioned: bool = True, retries: str = "0", name: str = "events"
) -> Table:
    table = catalog.create_table(
        f"bronze.{name}",
        schema=SCHEMA,
        properties={"format-version": "2", "commit.retry.num-retries": retries},
    )
    if partitioned:
        with table.update_spec() as spec:
            spec.add_field("ts", DayTransform(), "ts_day")
            spec.add_field("kind", IdentityTransform(), "kind")
    return table


def ingest(table: Table, batches: int, size: int, first_id: int = 0) -> Table:
    """Append like the ingest path does: rows and the next offset in one transaction."""
    for b in range(batches):
        start = first_id + b * size
        with table.transaction() as tx:
            tx.append(rows(start, size))
            tx.set_properties({OFFSETS_KEY: json.dumps({"0": start + size})})
    return table


def table_rows(table: Table, snapshot_id: int | None = None) -> pa.Table:
    return table.scan(snapshot_id=snapshot_id).to_arrow().sort_by("id")


def data_files(table: Table) -> set[str]:
    return {task.file.file_path for task in table.scan().plan_files()}


def local(path: str) -> str:
    return path.removeprefix("file://")


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "unpartitioned"])
def test_compaction_keeps_every_row_and_column(catalog: SqlCatalog, partitioned: bool) -> None:
    table = ingest(make_table(catalog, partitioned=partitioned), batches=12, size=25)
    before = table_rows(table)
    offsets = table.properties[OFFSETS_KEY]
    files_before = data_files(table)

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    table = catalog.load_table("bronze.events")
    after = table_rows(table)
    assert after.schema == before.schema
    assert after.equals(before)
    assert table.properties[OFFSETS_KEY] == offsets
    assert table.current_snapshot().summary.operation.value == "replace"
    assert report.files_before == len(files_before)
    assert report.files_after == len(data_files(table)) < len(files_before)
    assert report.rows_rewritten == before.num_rows
    assert report.manifests_before == 12 and report.manifests_after == 1
    assert report.attempts == 1
    # the merged manifests went through a manifest rewrite: the current snapshot's manifest
    # holds only live entries, the compaction's snapshot keeps its DELETED entries
    current = table.current_snapshot()
    assert current.snapshot_id == report.manifest_rewrite_snapshot_id
    assert current.parent_snapshot_id == report.snapshot_id
    assert [m.deleted_files_count for m in current.manifests(table.io)] == [0]
    rewrite = table.metadata.snapshot_by_id(report.snapshot_id)
    assert sum(m.deleted_files_count for m in rewrite.manifests(table.io)) == len(files_before)
    assert table_rows(table, report.snapshot_id).equals(before)
    again = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)
    assert again.snapshot_id == -1 and again.files_rewritten == 0
    assert set(again.as_metadata()) >= {"files_before", "seconds", "attempts"}


def test_partition_filter_and_small_file_stats(catalog: SqlCatalog) -> None:
    table = ingest(make_table(catalog), batches=6, size=20)
    stats = small_file_stats(table, target_file_size_bytes=1 << 20)
    assert stats and all(count == 6 for count in stats.values())
    assert sum(stats.values()) == len(data_files(table))
    assert small_file_stats(table, target_file_size_bytes=1) == {}

    from pyiceberg.expressions import EqualTo

    report = compact(table, target_file_size_bytes=1 << 20, partition_filter=EqualTo("kind", "buy"))
    assert report.partitions_compacted >= 1
    stats_after = small_file_stats(table.refresh(), target_file_size_bytes=1 << 20)
    assert all(count == (1 if "kind=buy" in path else 6) for path, count in stats_after.items())


def _hook_rewrite(monkeypatch: pytest.MonkeyPatch, action) -> list[str]:
    """Run `action` once, after compaction wrote its files and before it commits."""
    written: list[str] = []
    real = compaction_module.rewrite_groups

    def rewrite(table, groups, *rest):
        out = real(table, groups, *rest)
        first = not written
        written.extend(f.file_path for files in out for f in files)
        if first:
            action()
        return out

    monkeypatch.setattr(compaction_module, "rewrite_groups", rewrite)
    return written


@pytest.mark.parametrize("retries", ["0", "4"], ids=["persisted-0", "persisted-4"])
def test_compaction_that_loses_a_race_to_an_append_retries(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch, retries: str
) -> None:
    table = ingest(make_table(catalog, retries=retries), batches=8, size=20)
    expected = pa.concat_tables([table_rows(table), rows(10_000, 20)]).sort_by("id")
    _hook_rewrite(
        monkeypatch, lambda: ingest(catalog.load_table("bronze.events"), 1, 20, first_id=10_000)
    )

    report = compact(table, target_file_size_bytes=1 << 20)

    table = catalog.load_table("bronze.events")
    assert table_rows(table).equals(expected)
    assert report.attempts == 2  # a compare-and-set, whatever the table says
    assert table.properties[OFFSETS_KEY] == json.dumps({"0": 10_020})
    # another engine's retries are left as they are; an old persisted 0 is gone
    assert table.properties.get("commit.retry.num-retries") == (None if retries == "0" else "4")


@pytest.mark.parametrize("retries", ["0", "4"], ids=["persisted-0", "persisted-4"])
def test_compaction_whose_input_was_removed_fails_cleanly(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch, retries: str
) -> None:
    table = ingest(make_table(catalog, retries=retries), batches=8, size=20)

    def other_compaction() -> None:
        monkeypatch.setattr(compaction_module, "rewrite_groups", real)
        compact(catalog.load_table("bronze.events"), target_file_size_bytes=1 << 20)

    real = compaction_module.rewrite_groups
    written = _hook_rewrite(monkeypatch, other_compaction)

    with pytest.raises(CommitConflictError):
        compact(table, target_file_size_bytes=1 << 20)

    table = catalog.load_table("bronze.events")
    winner_rows = table_rows(table)
    assert winner_rows.equals(table_rows(table, table.current_snapshot().parent_snapshot_id))
    assert table.current_snapshot().summary.operation.value == "replace"
    assert len(table.metadata.snapshots) == 9  # 8 appends + the other compaction, nothing more
    assert written and not any(os.path.exists(local(p)) for p in written)


def test_expiry_keeps_time_travel_deletes_expired_files_and_offsets(catalog: SqlCatalog) -> None:
    table = ingest(make_table(catalog), batches=10, size=20)
    offsets = table.properties[OFFSETS_KEY]
    old_files = data_files(table)
    compact(table, target_file_size_bytes=1 << 20)
    table = ingest(catalog.load_table("bronze.events"), batches=3, size=20, first_id=1000)
    snapshots_before = len(table.metadata.snapshots)
    tagged = table.metadata.snapshots[2].snapshot_id
    table.manage_snapshots().create_tag(tagged, "audit").commit()
    tagged_rows = table_rows(table, tagged)

    everything = {str(p) for p in Path(local(table.location())).rglob("*") if p.is_file()}
    dry = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=2, dry_run=True)
    assert dry.snapshots_expired == snapshots_before - 3  # 2 newest + the tagged one stay
    assert dry.data_files_deleted > 0 and dry.manifest_lists_deleted == dry.snapshots_expired
    assert {str(p) for p in Path(local(table.location())).rglob("*") if p.is_file()} == everything
    assert len(catalog.load_table("bronze.events").metadata.snapshots) == snapshots_before

    report = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=2)

    table = catalog.load_table("bronze.events")
    assert report.paths == dry.paths
    assert report.snapshots_after == len(table.metadata.snapshots) == 3
    assert table.properties[OFFSETS_KEY] != offsets  # later batches moved it on...
    assert json.loads(table.properties[OFFSETS_KEY]) == {"0": 1060}  # ...and it survived
    for snapshot in table.metadata.snapshots:
        table_rows(table, snapshot.snapshot_id)  # every remaining snapshot still reads
    assert table_rows(table, tagged).equals(tagged_rows)
    live = data_files(table)
    assert all(not os.path.exists(local(p)) for p in old_files - live - _tag_files(table, tagged))
    assert all(os.path.exists(local(p)) for p in live)
    assert not any(os.path.exists(local(p)) for p in report.paths)


def _tag_files(table: Table, snapshot_id: int) -> set[str]:
    return {t.file.file_path for t in table.scan(snapshot_id=snapshot_id).plan_files()}


def test_expiry_keeps_the_newest_n_and_the_current_snapshot(catalog: SqlCatalog) -> None:
    table = ingest(make_table(catalog), batches=6, size=5)
    current = table.current_snapshot().snapshot_id
    report = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=4)
    assert report.snapshots_after == 4
    report = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=0)
    table = catalog.load_table("bronze.events")
    assert [s.snapshot_id for s in table.metadata.snapshots] == [current]
    assert table_rows(table).num_rows == 30
    future_cutoff = expire_snapshots(table, older_than=BASE, retain_last=0)
    assert future_cutoff.snapshots_expired == 0


def test_expiry_deletes_metadata_files_beyond_previous_versions_max(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    table.transaction().set_properties(
        {"write.metadata.previous-versions-max": "3"}
    ).commit_transaction()
    table = ingest(table, batches=8, size=5)
    metadata_dir = Path(local(table.metadata_location)).parent
    assert len(list(metadata_dir.glob("*.metadata.json"))) > 8

    report = expire_snapshots(table, older_than=dt.timedelta(0), retain_last=8)

    table = catalog.load_table("bronze.events")
    kept = {Path(local(e.metadata_file)).name for e in table.metadata.metadata_log}
    kept.add(Path(local(table.metadata_location)).name)
    assert {p.name for p in metadata_dir.glob("*.metadata.json")} == kept
    assert report.metadata_files_deleted > 0
    assert table_rows(table).num_rows == 40


def test_orphans_older_than_the_safety_age_go_younger_stay(catalog: SqlCatalog) -> None:
    table = ingest(make_table(catalog), batches=5, size=10)
    compact(table, target_file_size_bytes=1 << 20)
    expire_snapshots(table, older_than=dt.timedelta(0), retain_last=1)
    root = Path(local(table.location()))
    old_orphans = [root / "data" / "crashed-write.parquet", root / "metadata" / "lost-m0.avro"]
    young_orphan = root / "data" / "in-flight.parquet"
    four_days_ago = time.time() - 4 * 86400
    for path in [*old_orphans, young_orphan]:
        path.write_bytes(b"x" * 10)
    for path in old_orphans:
        os.utime(path, (four_days_ago, four_days_ago))
    referenced_file = next(iter(data_files(table)))
    os.utime(local(referenced_file), (four_days_ago, four_days_ago))
    expected = table_rows(table)

    dry = remove_orphan_files(table, dry_run=True)
    assert sorted(dry.paths) == sorted(str(p) for p in old_orphans)
    assert all(p.exists() for p in [*old_orphans, young_orphan])

    report = remove_orphan_files(table, older_than=dt.timedelta(days=3))

    assert report.orphans_deleted == 2 and report.orphans_too_young == 1
    assert not any(p.exists() for p in old_orphans) and young_orphan.exists()
    table = catalog.load_table("bronze.events")
    assert table_rows(table).equals(expected)
    for snapshot in table.metadata.snapshots:
        table_rows(table, snapshot.snapshot_id)


FLAT = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("kind", pa.string()),
        pa.field("day", pa.date32()),
        pa.field("payload", pa.binary()),
        pa.field("score", pa.float64()),
        pa.field("ratio", pa.float32()),
        pa.field("small", pa.int32()),
        pa.field("flag", pa.bool_()),
    ]
)


KIND = ("kind", IdentityTransform(), "kind")


def flat_table(
    catalog: SqlCatalog, partitioning: list[tuple[str, Transform, str]], *, batches: int, rows: int
) -> Table:
    """`bronze.flat` partitioned by (source, transform, name) fields, `batches` appends of
    `rows` rows each."""
    table = catalog.create_table("bronze.flat", schema=FLAT, properties={"format-version": "2"})
    with table.update_spec() as spec:
        for source, transform, name in partitioning:
            spec.add_field(source, transform, name)
    for b in range(batches):
        table.append(flat_rows(b * rows, rows))
    return table


def flat_rows(start: int, count: int) -> pa.Table:
    ids = range(start, start + count)
    return pa.table(
        {
            "id": list(ids),
            "ts": [None if i % 13 == 0 else BASE + dt.timedelta(minutes=3 * i) for i in ids],
            "kind": [None if i % 7 == 0 else ("view", "click", "buy")[i % 3] for i in ids],
            "day": [
                None if i % 5 == 0 else dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in ids
            ],
            "payload": [None if i % 6 == 0 else i.to_bytes(4, "big") for i in ids],
            "score": [None if i % 4 == 0 else i / 3 for i in ids],
            "ratio": [None if i % 3 == 0 else i / 7 for i in ids],
            "small": [None if i % 8 == 0 else i for i in ids],
            "flag": [None if i % 9 == 0 else i % 2 == 0 for i in ids],
        },
        schema=FLAT,
    )


@pytest.mark.parametrize("evolved", [False, True], ids=["fast-read", "evolved-schema"])
def test_compaction_of_flat_types_reads_fast_and_keeps_rows(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch, evolved: bool
) -> None:
    """Flat types on local files of a never-evolved schema go through Polars' reader; after
    a schema change they go through ArrowScan. Either way rows and Arrow types are kept."""
    import polars as pl

    from lakehouse.iceberg.maintenance import _polars_read

    table = flat_table(catalog, [("ts", DayTransform(), "ts_day"), KIND], batches=6, rows=40)
    if evolved:
        with table.update_schema() as update:
            update.rename_column("score", "points")
        table.append(
            flat_rows(1000, 40).rename_columns([*FLAT.names[:5], "points", *FLAT.names[6:]])
        )
    before = table.scan().to_arrow().sort_by("id")
    files_before = data_files(table)
    calls: list[int] = []
    real = pl.read_parquet
    monkeypatch.setattr(
        _polars_read.pl, "read_parquet", lambda *a, **k: calls.append(1) or real(*a, **k)
    )

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    after = catalog.load_table("bronze.flat").scan().to_arrow().sort_by("id")
    assert after.schema == before.schema
    assert after.equals(before)
    assert report.files_rewritten > report.files_written > 0
    assert bool(calls) is not evolved
    for task in catalog.load_table("bronze.flat").scan().plan_files():
        if task.file.file_path in files_before:
            continue
        # written by compaction: a dictionary only where it pays (`kind`, 3 values)
        chunks = pq.ParquetFile(local(task.file.file_path)).metadata.row_group(0)
        dictionary = {
            chunks.column(i).path_in_schema
            for i in range(chunks.num_columns)
            if chunks.column(i).dictionary_page_offset is not None
        }
        assert dictionary == ({"kind"} if task.file.partition[1] is not None else set())


@pytest.mark.parametrize("share", [1.0, 0.5], ids=["all-read-while-planning", "half"])
def test_files_read_while_planning_are_not_read_again(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch, share: float
) -> None:
    """Small files are read and decoded while the manifests are planned (`_prefetch`);
    groups all of whose files were are written from those rows; the others (past the
    byte budget) are read the usual way. Rows are kept either way."""
    from lakehouse.iceberg.maintenance import _prefetch, _rewrite

    # 12 appends of half a day each: every (day, kind) partition has two files, in two
    # consecutive manifests, so a budget of half the bytes covers some groups, not all
    table = flat_table(catalog, [("ts", DayTransform(), "ts_day"), KIND], batches=12, rows=240)
    before = table.scan().to_arrow().sort_by("id")
    total = int(table.current_snapshot().summary["total-files-size"])
    real_for_table = _prefetch.Prefetch.for_table.__func__  # type: ignore[attr-defined]
    made: list[_prefetch.Prefetch] = []

    def for_table(cls, table, small_bytes):  # type: ignore[no-untyped-def]
        prefetch = real_for_table(cls, table, small_bytes)
        prefetch._budget_bytes = int(total * share)
        made.append(prefetch)
        return prefetch

    monkeypatch.setattr(_prefetch.Prefetch, "for_table", classmethod(for_table))
    chunk_reads: list[int] = []
    real_read_chunk = _rewrite._read_chunk
    monkeypatch.setattr(
        _rewrite,
        "_read_chunk",
        lambda metadata, groups, checks: (
            chunk_reads.append(len(groups)) or real_read_chunk(metadata, groups, checks)
        ),
    )

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    assert len(made) == 1
    assert catalog.load_table("bronze.flat").scan().to_arrow().sort_by("id").equals(before)
    assert report.files_rewritten > report.files_written > 1
    if share == 1.0:
        assert chunk_reads == []  # every group came from the files read while planning
    else:
        assert 0 < sum(chunk_reads) < report.files_written


def test_no_files_are_read_while_planning_a_filtered_compaction(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyiceberg.expressions import EqualTo

    from lakehouse.iceberg.maintenance import _prefetch

    table = flat_table(catalog, [("ts", DayTransform(), "ts_day"), KIND], batches=4, rows=40)
    before = table.scan().to_arrow().sort_by("id")
    monkeypatch.setattr(_prefetch.Prefetch, "add", lambda *a: pytest.fail("read while planning"))

    report = compact(
        table, target_file_size_bytes=1 << 20, partition_filter=EqualTo("kind", "view")
    )

    assert report.files_written > 0
    assert catalog.load_table("bronze.flat").scan().to_arrow().sort_by("id").equals(before)


def test_rows_a_polars_read_misplaces_are_read_again_with_arrowscan(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk read by Polars is cut into groups by the files' record counts; if its rows
    came back in another order, a group's rows would not all be of its partition: the
    partition check sees it and the chunk is read again by ArrowScan, rows kept."""
    import polars as pl

    from lakehouse.iceberg.maintenance import _polars_read, _rewrite

    table = flat_table(catalog, [("ts", DayTransform(), "ts_day"), KIND], batches=6, rows=40)
    before = table.scan().to_arrow().sort_by("id")
    real = pl.read_parquet
    monkeypatch.setattr(_polars_read.pl, "read_parquet", lambda *a, **k: real(*a, **k).reverse())
    fallback: list[int] = []
    real_scan = _rewrite._read_with_arrowscan
    monkeypatch.setattr(
        _rewrite,
        "_read_with_arrowscan",
        lambda *a: fallback.append(1) or real_scan(*a),
    )

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    fresh = catalog.load_table("bronze.flat")
    assert fresh.scan().to_arrow().sort_by("id").equals(before)
    assert len(fallback) == report.files_written > 1
    for task in fresh.scan().plan_files():  # each file holds rows of its partition only
        kinds = pq.read_table(local(task.file.file_path), columns=["kind"])["kind"].unique()
        assert kinds.to_pylist() == [task.file.partition[1]]


@pytest.mark.parametrize(
    "partitioning",
    [
        [("day", IdentityTransform(), "d")],
        [("ts", IdentityTransform(), "t")],
        [("ts", HourTransform(), "h"), ("small", IdentityTransform(), "s")],
        [("day", MonthTransform(), "m"), ("flag", IdentityTransform(), "f")],
        [("ts", YearTransform(), "y"), ("id", BucketTransform(3), "b")],
        [("kind", TruncateTransform(2), "k"), ("payload", IdentityTransform(), "p")],
        [("score", IdentityTransform(), "sc")],
    ],
    ids=[
        "date",
        "timestamptz",
        "hour-int",
        "month-bool",
        "year-bucket",
        "truncate-binary",
        "double",
    ],
)
def test_partition_check_passes_rows_of_their_partition(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch, partitioning: list
) -> None:
    """The check after a Polars read accepts every transform's rows (nulls included): no
    group falls back to ArrowScan, and rows are kept."""
    from lakehouse.iceberg.maintenance import _rewrite

    table = flat_table(catalog, partitioning, batches=0, rows=0)
    for b in range(3):
        table.append(flat_rows(b * 10, 10))
        table.append(flat_rows(100 + b * 10, 5))
    before = table.scan().to_arrow().sort_by("id")
    fallback: list[int] = []
    real_scan = _rewrite._read_with_arrowscan
    monkeypatch.setattr(
        _rewrite, "_read_with_arrowscan", lambda *a: fallback.append(1) or real_scan(*a)
    )

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    assert catalog.load_table("bronze.flat").scan().to_arrow().sort_by("id").equals(before)
    assert report.files_written > 0
    assert fallback == []


def test_a_failing_group_write_deletes_the_written_files_and_commits_nothing(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups are written on a pool of threads: when one group's write fails after others
    were written, every file written is deleted and the table is left as it was."""
    from lakehouse.iceberg import data_file_writer as _writer

    table = flat_table(catalog, [KIND], batches=6, rows=40)
    snapshot = table.current_snapshot().snapshot_id
    on_disk = {str(p) for p in Path(local(table.location())).rglob("*.parquet")}
    calls: list[int] = []
    real = _writer.DataFileWriter.write

    def write(self, rows, key):  # the third group fails, the others are written
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(self, rows, key)

    monkeypatch.setattr(_writer.DataFileWriter, "write", write)

    with pytest.raises(OSError, match="disk full"):
        compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    assert len(calls) >= 3
    fresh = catalog.load_table("bronze.flat")
    assert fresh.current_snapshot().snapshot_id == snapshot
    assert {str(p) for p in Path(local(table.location())).rglob("*.parquet")} == on_disk


def test_compaction_restores_the_switch_interval_and_collector(
    catalog: SqlCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run shortens the GIL switch interval and pauses the collector (`_switch`, `_gc`);
    both are as they were afterwards, also when the run fails."""
    import gc
    import sys

    seen: list[tuple[float, bool]] = []
    table = ingest(make_table(catalog), batches=3, size=20)
    real = compaction_module.rewrite_groups

    def rewrite(*args):  # type: ignore[no-untyped-def]
        seen.append((sys.getswitchinterval(), gc.isenabled()))
        return real(*args)

    monkeypatch.setattr(compaction_module, "rewrite_groups", rewrite)
    before = (sys.getswitchinterval(), gc.isenabled())

    compact(table, target_file_size_bytes=1 << 20)

    assert seen == [(0.0005, False)]
    assert (sys.getswitchinterval(), gc.isenabled()) == before
    with pytest.raises(TypeError):
        compact(table, target_file_size_bytes="not a size")  # type: ignore[arg-type]
    assert (sys.getswitchinterval(), gc.isenabled()) == before
