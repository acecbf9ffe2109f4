"""The offset-chain and conservation audits on real tables (SQLite catalog)."""

from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog

from lakehouse.audit import ConservationReport, check_conservation, check_offset_chain
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


def test_a_replayed_dead_letter_counts_once_as_a_row(tmp_path: Path) -> None:
    """Dead letters at (0, 3) and (0, 4); (0, 3) then replayed into the table: it counts as a
    row (replayed), (0, 4) as a dead letter; a dead letter written twice is still caught."""
    from datetime import UTC, datetime

    from lakehouse.errors import DecodeError
    from lakehouse.iceberg.dead_letters import dead_letter_rows, ensure_dead_letter_table
    from lakehouse.iceberg.replayed import commit_replayed
    from lakehouse.kafka.reader import RawBatch

    catalog = catalog_with_table(tmp_path)
    data = rows({0: (0, 10)})
    commit(catalog, {0: (0, 10)}, data.filter(pa.array([o not in (3, 4) for o in range(10)])))
    raw = RawBatch.of(TOPIC, [0, 0], [3, 4], [0, 0], [None, None], [b"x", b"y"])
    failures = [(i, DecodeError("unknown-schema-id", "gone")) for i in (0, 1)]
    letters = dead_letter_rows(raw, failures, "run", datetime.now(UTC))
    ensure_dead_letter_table(catalog, "bronze.dead_letters").append(letters)
    commit_replayed(catalog, "bronze.clicks", TOPIC, rows({0: (3, 4)}), run_id="r")

    def audit() -> ConservationReport:
        return check_conservation(
            catalog.load_table("bronze.clicks"), catalog.load_table("bronze.dead_letters"), TOPIC
        )

    report = audit()
    assert (report.rows, report.dead_letters, report.replayed, report.duplicates) == (9, 1, 1, 0)
    assert report.ok and report.offsets_consumed == 10
    catalog.load_table("bronze.dead_letters").append(letters.slice(1))  # written twice
    twice = audit()
    assert twice.duplicates == 1 and not twice.ok
