"""Silver freshness under `dagster dev`: for each window that closes, the delay from the
moment its end passed the watermark's reach to its final row being readable.

The demo producer writes events with event time = wall clock (on-time ones lag it by less
than 2 s), so a window's end E is passed by the watermark once events of E +
max_out_of_orderness exist: at wall-clock time E + max_out_of_orderness. The delay is the
wall-clock time a fresh pyiceberg reader first sees the window's final row, minus that.
It includes bronze ingestion (the sensor's trigger, the run) and the silver run.

Run while scripts/run.sh is up:
    .venv/bin/python bench/silver_latency.py [--stream clicks] [--window NAME] [--samples 20]
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from pyiceberg.expressions import EqualTo

from lakehouse.config import load_declarations
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.settings import Settings
from lakehouse.windowing.silver import silver_table_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="readings")
    parser.add_argument("--window", default=None, help="default: the stream's first window")
    parser.add_argument("--samples", type=int, default=20, help="windows to time")
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args()
    settings = Settings()
    spec = load_declarations(settings.streams_file).streams[args.stream]
    window = args.window or next(iter(spec.windows))
    table_name = silver_table_name(spec, window)
    slack = timedelta(microseconds=spec.watermark.out_of_orderness_us)
    seen: set[datetime] | None = None  # windows already final when we started are not timed
    delays: list[float] = []
    while len(delays) < args.samples:
        table = table_or_none(load_catalog(settings), table_name)
        now = datetime.now(UTC)
        if table is not None:
            rows = table.scan(
                row_filter=EqualTo("final", True), selected_fields=("window_end",)
            ).to_arrow()
            ends = set(rows.column("window_end").to_pylist())
            for end in ends - (ends if seen is None else seen):
                delay = (now - (end + slack)).total_seconds()
                delays.append(delay)
                print(f"window ending {end:%H:%M:%S}: readable {delay:5.1f}s after", flush=True)
            seen = ends
        time.sleep(args.poll)
    delays.sort()
    p95 = delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))]
    print(
        f"{table_name}: {len(delays)} windows, median {statistics.median(delays):.1f}s, "
        f"p95 {p95:.1f}s, max {max(delays):.1f}s"
    )


if __name__ == "__main__":
    main()
