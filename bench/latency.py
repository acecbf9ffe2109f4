"""End-to-end delay under `dagster dev`: produce marker events, time until each is readable
in its bronze Iceberg table through a fresh pyiceberg reader.

Run while scripts/run.sh is up:  .venv/bin/python bench/latency.py [--samples 5]
"""

import argparse
import statistics
import time

from pyiceberg.expressions import EqualTo

from lakehouse.config import load_declarations
from lakehouse.demo.producer import produce
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.settings import Settings


def wait_readable(settings: Settings, table: str, event_id: str, timeout: float) -> float:
    """Seconds until a fresh reader sees `event_id` in `table`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = table_or_none(load_catalog(settings), table)
        if found is not None:
            rows = found.scan(
                row_filter=EqualTo("event_id", event_id), selected_fields=("event_id",)
            )
            if rows.to_arrow().num_rows:
                return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"{event_id} not readable in {table} after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--stream", default="clicks")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    settings = Settings()
    spec = load_declarations(settings.streams_file).streams[args.stream]
    delays = []
    for _ in range(args.samples):
        report = produce(
            settings, args.stream, count=1, topic=spec.topic, progress=False, collect_ids=True
        )
        [event_id] = report.ids
        delay = wait_readable(settings, spec.table, event_id, args.timeout)
        delays.append(delay)
        print(f"{event_id}: readable after {delay:.1f}s", flush=True)
    print(
        f"median {statistics.median(delays):.1f}s, min {min(delays):.1f}s, max {max(delays):.1f}s"
    )


if __name__ == "__main__":
    main()
