"""The offset-chain and conservation audits on real tables (SQLite catalog)."""

from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from lakehouse.audit import check_conservation, check_offset_chain
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import commit_batch, offsets_key

TOPIC = "clicks"


def rows(ranges: dict[int, tuple[int, int]]) -> pa.Table:
    parts: list[int] = []
    offsets: list[int] = []
    for p, (start, end) in sorted(ranges.items()):
        parts += [p] * (end - start)
        offsets += list(range(start, end))
    return pa.table(
        {
            "event_id": [f"{p}-{o}" for p, o in zip(parts, offsets, strict=True)],
            "_kafka_partition": pa.array(parts, pa.int32()),
            "_kafka_offset": pa.array(offsets, pa.int64()),
        }
    )


def catalog_with_table(tmp_path: Path) -> SqlCatalog:
    catalog = SqlCatalog(
        "lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri()
    )
    ensure_table(catalog, "bronze.clicks", rows({0: (0, 1)}).schema)
    return catalog


def commit(catalog: SqlCatalog, ranges: dict[int, tuple[int, int]], data: pa.Table) -> None:
    commit_batch(
        catalog,
        "bronze.clicks",
        TOPIC,
        data,
        {p: s for p, (s, _) in ranges.items()},
        {p: e for p, (_, e) in ranges.items()},
    )


def test_a_clean_history_passes_both_audits(tmp_path: Path) -> None:
    catalog = catalog_with_table(tmp_path)
    commit(catalog, {0: (0, 10), 1: (0, 5)}, rows({0: (0, 10), 1: (0, 5)}))
    commit(catalog, {0: (10, 20)}, rows({0: (10, 20)}))
    commit(catalog, {0: (15, 25)}, rows({0: (15, 25)}))  # overlapping replay: trimmed
    table = catalog.load_table("bronze.clicks")
    chain = check_offset_chain(table, TOPIC)
    assert chain.ok, chain.problems
    assert chain.commits == 3
    conservation = check_conservation(table, None, TOPIC)
    assert (conservation.rows, conservation.offsets_consumed, conservation.duplicates) == (
        30,
        30,
        0,
    )
    assert conservation.ok


def test_a_duplicate_written_behind_the_protocol_is_caught(tmp_path: Path) -> None:
    catalog = catalog_with_table(tmp_path)
    commit(catalog, {0: (0, 10)}, rows({0: (0, 10)}))
    table = catalog.load_table("bronze.clicks")
    table.append(rows({0: (3, 5)}))  # a writer that bypassed commit_batch
    report = check_conservation(catalog.load_table("bronze.clicks"), None, TOPIC)
    assert report.duplicates == 2 and not report.ok


def test_a_gap_in_the_offsets_is_caught(tmp_path: Path) -> None:
    catalog = catalog_with_table(tmp_path)
    commit(catalog, {0: (0, 10)}, rows({0: (0, 10)}))
    table = catalog.load_table("bronze.clicks")
    # Someone moved the offsets forward by hand, then a batch continued from there.
    table.transaction().set_properties({offsets_key(TOPIC): '{"0":20}'}).commit_transaction()
    commit(catalog, {0: (20, 30)}, rows({0: (20, 30)}))
    table = catalog.load_table("bronze.clicks")
    chain = check_offset_chain(table, TOPIC)
    assert not chain.ok and "gap" in chain.problems[0]
    conservation = check_conservation(table, None, TOPIC)
    assert conservation.rows == 20 and conservation.offsets_consumed == 30 and not conservation.ok
