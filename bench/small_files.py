"""Small-files benchmark: many micro-batch appends, then scans before and after compaction.

    POLARS_ICEBERG_PLANNER=pyiceberg .venv/bin/python bench/small_files.py   # 1,000 x 1,000
    .venv/bin/python bench/small_files.py --batches 50 --rows 20000 --no-results

Appends click-event-shaped batches to a table partitioned by day(event_time) and
event_type, each with the offsets property as ingest does (`tx.append` + `tx.set_properties`,
one snapshot and one manifest per batch); times a filtered query and a full scan with
pyiceberg (→ Arrow) and Polars (`pl.scan_iceberg`), compacts, times them again, prints the
ratios and writes them to bench/results/small_files.json.

Compaction runs `--compactions` times (5) on the same pre-compaction state (the catalog
pointed back at the metadata before it; earlier runs' files stay as unreferenced orphans);
the median run is reported with the others' times, because one run on a shared 2-core
machine varies by ±20 %.

The setup stages `--commit-every` batches per catalog commit (one transaction holding that
many appends: still one snapshot, one manifest list and one manifest per batch, each
snapshot's manifest list naming every manifest before it). Only the number of catalog
round trips and metadata-file versions differs from committing every batch.
Goals: scans 10x faster or more, compaction 1 M rows/s or more.
"""

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table, Transaction
from pyiceberg.transforms import DayTransform, IdentityTransform

from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.maintenance import CompactionReport, compact

RESULTS = Path(__file__).parent / "results" / "small_files.json"

SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64()),
        pa.field("event_type", pa.string()),
        pa.field("url", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
    ]
)
TYPES = ("view", "click", "scroll", "purchase")
START = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def batch(index: int, rows: int, rng: random.Random) -> pa.Table:
    offsets = range(index * rows, (index + 1) * rows)
    start_us = int(START.timestamp() * 1_000_000)
    return pa.table(
        {
            "event_id": [str(o) for o in offsets],
            "user_id": [rng.randrange(50_000) for _ in offsets],
            "event_type": [rng.choice(TYPES) for _ in offsets],
            "url": [f"/p/{rng.randrange(500)}" for _ in offsets],
            # an event every 2 s: 1 M events span about 23 days
            "event_time": [start_us + o * 2_000_000 for o in offsets],
            "_kafka_partition": [0] * rows,
            "_kafka_offset": list(offsets),
        },
        schema=SCHEMA,
    )


def timed(fn: Callable[[], int], repeat: int = 3) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(table: Table, total: int) -> dict[str, tuple[float, int]]:
    day = START + dt.timedelta(seconds=total)  # the second half of the events
    location = table.metadata_location
    flt = EqualTo("event_type", "purchase")
    return {
        "pyiceberg full scan": timed(lambda: table.scan().to_arrow().num_rows),
        "pyiceberg filtered": timed(lambda: table.scan(row_filter=flt).to_arrow().num_rows),
        "polars full scan": timed(lambda: pl.scan_iceberg(location).collect().height),
        "polars filtered": timed(
            lambda: (
                pl.scan_iceberg(location)
                .filter((pl.col("event_type") == "purchase") & (pl.col("event_time") >= day))
                .collect()
                .height
            )
        ),
    }


def ingest(table: Table, batches: int, rows: int, commit_every: int) -> None:
    """`batches` appends as ingest makes them, `commit_every` per catalog commit."""
    rng = random.Random(7)
    tx: Transaction | None = None
    for i in range(batches):
        tx = tx or cas_transaction(table)
        tx.append(batch(i, rows, rng))
        tx.set_properties({"lakehouse.offsets.clicks": json.dumps({"0": (i + 1) * rows})})
        if (i + 1) % commit_every == 0 or i == batches - 1:
            tx.commit_transaction()
            tx = None


def compactions(
    catalog: SqlCatalog, table: Table, count: int, target_bytes: int
) -> list[CompactionReport]:
    """`count` compactions, each of the table as it is now (the catalog is pointed back at
    this metadata before each run after the first: a dropped row, not dropped files)."""
    identifier = "bronze.clicks"
    location = table.metadata_location
    reports = []
    for run in range(count):
        if run:
            catalog.drop_table(identifier)
            table = catalog.register_table(identifier, location)
        reports.append(compact(table, target_file_size_bytes=target_bytes))
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000, help="rows per batch")
    parser.add_argument("--target-mb", type=int, default=128)
    parser.add_argument(
        "--commit-every", type=int, default=100, help="batches per catalog commit in the setup"
    )
    parser.add_argument(
        "--compactions", type=int, default=5, help="compactions of the same state (median)"
    )
    parser.add_argument("--no-results", action="store_true", help=f"do not write {RESULTS}")
    args = parser.parse_args()
    if args.compactions < 1:
        parser.error("--compactions must be at least 1")

    root = tempfile.mkdtemp(prefix="small-files-")
    catalog = SqlCatalog("bench", uri=f"sqlite:///{root}/c.db", warehouse=f"file://{root}/wh")
    catalog.create_namespace("bronze")
    table = catalog.create_table(
        "bronze.clicks",
        schema=SCHEMA,
        properties={"write.parquet.compression-codec": "zstd"},
    )
    with table.update_spec() as spec:
        spec.add_field("event_time", DayTransform(), "event_time_day")
        spec.add_field("event_type", IdentityTransform(), "event_type")

    started = time.perf_counter()
    ingest(table, args.batches, args.rows, args.commit_every)
    ingest_s = time.perf_counter() - started
    total = args.batches * args.rows
    table = catalog.load_table("bronze.clicks")
    snapshot = table.current_snapshot()
    assert snapshot is not None
    shape = {
        "snapshots": len(table.metadata.snapshots),
        "manifests": len(snapshot.manifests(table.io)),
        "data_files": int(snapshot.summary["total-data-files"]),
        "rows": int(snapshot.summary["total-records"]),
    }
    assert shape["rows"] == total and shape["snapshots"] == args.batches
    print(
        f"appended {total:,} rows in {args.batches:,} snapshots "
        f"({-(-args.batches // args.commit_every)} catalog commits): {ingest_s:.1f} s; "
        f"{shape['manifests']:,} manifests, {shape['data_files']:,} data files  ({root})"
    )

    before = measure(table, total)
    runs = compactions(catalog, table, args.compactions, args.target_mb * 1024 * 1024)
    report = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    table = catalog.load_table("bronze.clicks")
    after = measure(table, total)
    assert after["pyiceberg full scan"][1] == total == before["pyiceberg full scan"][1]

    print(f"\n{'query':<22}{'before s':>10}{'after s':>10}{'speed-up':>10}{'rows':>11}")
    scans = {}
    for name, (b, rows) in before.items():
        a, rows_after = after[name]
        assert rows == rows_after, name
        print(f"{name:<22}{b:>10.3f}{a:>10.3f}{b / a:>9.1f}x{rows:>11,}")
        scans[name] = {
            "before_s": round(b, 4),
            "after_s": round(a, 4),
            "speedup": round(b / a, 1),
            "rows": rows,
        }
    rate = report.rows_rewritten / report.seconds
    print(
        f"\ncompaction: {report.files_before:,} → {report.files_after:,} data files, "
        f"{report.manifests_before:,} → {report.manifests_after:,} manifests, "
        f"{report.rows_rewritten:,} rows in {report.seconds:.2f} s = {rate:,.0f} rows/s "
        f"(plan {report.plan_seconds:.2f} s, rewrite {report.rewrite_seconds:.2f} s, "
        f"commit {report.commit_seconds:.2f} s); median of {len(runs)} runs: "
        + ", ".join(f"{r.seconds:.2f}" for r in runs)
        + " s"
    )
    if args.no_results:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "command": " ".join(
            [
                *(
                    [f"POLARS_ICEBERG_PLANNER={os.environ['POLARS_ICEBERG_PLANNER']}"]
                    if "POLARS_ICEBERG_PLANNER" in os.environ
                    else []
                ),
                ".venv/bin/python",
                "bench/small_files.py",
                *sys.argv[1:],
            ]
        ),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        },
        "config": vars(args),
        "setup": {"seconds": round(ingest_s, 1), **shape},
        "scans": scans,
        "compaction": {
            **report.as_metadata(),
            "rows_per_second": round(rate),
            "runs_seconds": [round(r.seconds, 3) for r in runs],
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
