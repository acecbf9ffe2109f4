"""Silver windows on the real broker and bronze, against a ceiling and a peer, in one run:

  (a) ceiling  the same bronze rows read from Iceberg into Polars and the declared window
               (`views_per_page_5m`: 5 min sliding every 1 min, views and distinct users per
               page) computed with `group_by_dynamic`, nothing else;
  (b) silver   one silver pass over the same rows, from bronze to committed silver;
  (c) peer     Quix Streams consuming the same topic and computing the same 5-minute sliding
               count per page to completion (bench/quix_peer.py, in its own virtualenv);
  (d) incremental  a silver pass over a micro-batch of new events on top of a bronze table
               of 10,000,000 rows, against the same micro-batch on a table of 100,000 rows.

.venv/bin/python bench/windows.py [--events 1000000] [--rounds 3]
    [--big 10000000] [--small 100000] [--micro 1000] [--skip-peer] [--skip-incremental]

Starts its own stack on free ports in a temporary home (or uses the LAKEHOUSE_* one with
`--use-running`). (a)-(c) use `--events` demo clicks produced through the broker with an
event clock of 100 events/s, ingested by bronze (timed: bronze + silver end to end is set
against (c)). Phases run in interleaved rounds, each in its own process (peak memory and CPU
are its own), each phase's median run counts. (d) builds both bronze tables through the real
commit protocol (demo clicks, 100,000-row commits, as ingestion writes them; no broker: the
pass only reads bronze), windows them as they grow, then times passes over micro-batches
committed to both, alternating. Writes bench/results/windows.json.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WINDOW = "views_per_page_5m"
START = datetime(2026, 1, 1, tzinfo=UTC)
TICK = timedelta(milliseconds=10)  # 100 events per second of event time
QUIX_REQUIREMENTS = ROOT / "bench" / "requirements-quix.txt"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def read(self) -> dict[str, float]:
        return {
            "seconds": time.perf_counter() - self.wall,
            "cpu_seconds": round(_cpu_seconds() - self.cpu, 2),
        }


def _clicks_spec(table: str, topic: str, window: str = WINDOW) -> Any:
    """The shipped clicks declaration on the bench's topic and table, one window under
    `window` (a new name per round: each round windows into a fresh silver table)."""
    from lakehouse.config import load_declarations

    clicks = load_declarations(ROOT / "streams.yaml").streams["clicks"]
    return clicks.model_copy(
        update={
            "name": table.split(".")[1],
            "topic": topic,
            "table": table,
            "windows": {window: clicks.windows[WINDOW]},
        }
    )


# Phases (each in its own process) ---------------------------------------------------------


def phase_bronze(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse.ingest import ingest

    spec = _clicks_spec(args.table, args.topic)
    clock = _Clock()
    report = ingest(settings, spec, run_id="bench", dead_letter_table="bench.dead_letters")
    return {"records": report.records_written, "batches": report.batches, **clock.read()}


def phase_ceiling(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    import polars as pl

    from lakehouse.iceberg.catalog import load_catalog

    clock = _Clock()
    table = load_catalog(settings).load_table(args.table)
    rows = pl.from_arrow(
        table.scan(selected_fields=("event_time", "page", "action", "user_id")).to_arrow()
    )
    assert isinstance(rows, pl.DataFrame)
    windows = (
        rows.filter(pl.col("action") == "view")
        .sort("event_time")
        .group_by_dynamic("event_time", every="1m", period="5m", group_by="page")
        .agg(pl.len().alias("views"), pl.col("user_id").n_unique().alias("users"))
    )
    timing = clock.read()
    views = int((rows["action"] == "view").sum())
    return {"records": rows.height, "views": views, "windows": windows.height, **timing}


def phase_silver(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse.windowing.silver import run_silver_pass

    window = f"views_r{args.round}"
    spec = _clicks_spec(args.table, args.topic, window)
    clock = _Clock()
    report = run_silver_pass(settings, spec, window)
    return {
        "records": report.rows_read,
        "windows": report.rows_emitted,
        "late_events": report.late_events,
        **clock.read(),
    }


def phase_incremental(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One silver pass of the micro-batch already committed to `args.table`'s bronze."""
    from lakehouse.windowing.silver import run_silver_pass

    spec = _clicks_spec(args.table, args.topic)
    clock = _Clock()
    report = run_silver_pass(settings, spec, WINDOW, now=_end_of(args.events_total))
    return {
        "records": report.rows_read,
        "windows": report.rows_emitted,
        "recomputed": report.bronze_rows_recomputed,
        **clock.read(),
    }


PHASES = {
    "bronze": phase_bronze,
    "ceiling": phase_ceiling,
    "silver": phase_silver,
    "incremental": phase_incremental,
}


def _phase(name: str, **options: Any) -> dict[str, Any]:
    """Run a phase in a child process; its figures and its own peak memory."""
    argv = [sys.executable, __file__, "--phase", name]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def _each_round(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    return {name: [round(r["seconds"], 3) for r in each] for name, each in runs.items()}


# The peer ---------------------------------------------------------------------------------


def _quix_python() -> Path:
    """A virtualenv with Quix Streams (pip from PyPI), made once under the cache folder."""
    cache = Path(os.environ.get("LAKEHOUSE_CACHE_DIR", "~/.cache/lakehouse")).expanduser()
    venv = cache / "bench-quix-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(QUIX_REQUIREMENTS)], check=True
        )
    return python


def run_peer(settings: Any, topic: str, views: int) -> dict[str, Any]:
    state = tempfile.mkdtemp(prefix="quix-state-")
    try:
        out = subprocess.run(
            [
                str(_quix_python()),
                str(ROOT / "bench" / "quix_peer.py"),
                "--broker",
                settings.kafka_bootstrap_servers,
                "--registry",
                settings.schema_registry_url,
                "--topic",
                topic,
                "--views",
                str(views),
                "--state",
                state,
            ],
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"the Quix Streams peer failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# (d): bronze tables built through the commit protocol -------------------------------------


def _end_of(events: int) -> datetime:
    return START + TICK * events


def _bronze_batches(first: int, count: int, topic: str, offsets: dict[int, int]) -> Any:
    """Demo clicks number `first`..`first + count` of the event clock as bronze batches of
    100,000 rows with Kafka columns: event i in partition i % 6, at that partition's next
    offset (`offsets` is advanced); the Kafka timestamp is the event time."""
    import pyarrow as pa

    from lakehouse.demo.generators import ClickGenerator

    generator = ClickGenerator(seed=first, start=START + TICK * first, tick=TICK)
    done = 0
    while done < count:
        n = min(100_000, count - done)
        events = generator.take(n)
        table = pa.Table.from_pylist([e.value for e in events])
        partitions = [(first + done + i) % 6 for i in range(n)]
        placed = []
        for p in partitions:
            placed.append(offsets.get(p, 0))
            offsets[p] = offsets.get(p, 0) + 1
        times = table["event_time"].cast(pa.timestamp("us", tz="UTC"))
        table = (
            table.set_column(table.schema.get_field_index("event_time"), "event_time", times)
            .append_column("_kafka_topic", pa.array([topic] * n))
            .append_column("_kafka_partition", pa.array(partitions, pa.int32()))
            .append_column("_kafka_offset", pa.array(placed, pa.int64()))
            .append_column("_kafka_timestamp", times)
            .append_column("_kafka_key", pa.array([e.key.encode() for e in events]))
            .append_column("_ingested_at", times)
        )
        yield table
        done += n


def _commit(catalog: Any, table: str, topic: str, rows: Any) -> None:
    import pyarrow.compute as pc

    from lakehouse.iceberg.catalog import ensure_table
    from lakehouse.iceberg.commit import commit_batch

    ensure_table(catalog, table, rows.schema, ("day(event_time)",))
    start, nxt = {}, {}
    for p in range(6):
        offsets = rows["_kafka_offset"].filter(pc.equal(rows["_kafka_partition"], p))
        if len(offsets):
            start[p] = pc.min(offsets).as_py()
            nxt[p] = pc.max(offsets).as_py() + 1
    commit_batch(catalog, table, topic, rows, start, nxt)


def build_incremental(settings: Any, big: int, small: int) -> dict[str, str]:
    """Two bronze tables ending at the same event time, silver caught up after each commit
    (as a live silver would have)."""
    from lakehouse.iceberg.catalog import load_catalog
    from lakehouse.windowing.silver import run_silver_pass

    catalog = load_catalog(settings)
    tables = {"big": "bench.clicks_big", "small": "bench.clicks_small"}
    for name, size in (("big", big), ("small", small)):
        spec = _clicks_spec(tables[name], f"bench-{name}")
        started = time.perf_counter()
        for batch in _bronze_batches(big - size, size, spec.topic, {}):
            _commit(catalog, spec.table, spec.topic, batch)
            run_silver_pass(settings, spec, WINDOW, catalog=catalog, now=_end_of(big))
        print(f"  built {spec.table}: {size:,} rows in {time.perf_counter() - started:.0f}s")
    return tables


def micro_batch(settings: Any, tables: dict[str, str], big: int, micro: int, n: int) -> None:
    """The same `micro` events (the n-th micro-batch after event `big`) into both tables."""
    from lakehouse.iceberg.catalog import load_catalog
    from lakehouse.iceberg.commit import committed_offsets

    catalog = load_catalog(settings)
    for name, table in tables.items():
        topic = f"bench-{name}"
        offsets = committed_offsets(catalog.load_table(table), topic)
        for batch in _bronze_batches(big + n * micro, micro, topic, offsets):
            _commit(catalog, table, topic, batch)


# Main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--micro", type=int, default=1_000)
    parser.add_argument("--micro-rounds", type=int, default=5)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-incremental", action="store_true")
    parser.add_argument("--only-incremental", action="store_true", help="(d) alone")
    parser.add_argument("--use-running", action="store_true")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--events-total", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    from lakehouse.settings import Settings

    if args.phase:
        result = PHASES[args.phase](Settings(), args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({**result, "peak_mb": round(peak, 1)}))
        return

    stack = home = None
    if not args.use_running:
        from lakehouse.stack import LocalStack

        home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-windows-"))
        os.environ.update(
            {
                "LAKEHOUSE_HOME": str(home),
                "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}",
                "LAKEHOUSE_KAFKA_CONTROLLER_PORT": str(_free_port()),
                "LAKEHOUSE_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{_free_port()}/apis/ccompat/v7",
            }
        )
        stack = LocalStack(Settings())
        stack.up()
    try:
        summary = run(Settings(), args)
        print(json.dumps(summary, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        name = "windows_incremental.json" if args.only_incremental else "windows.json"
        (out / name).write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        if stack is not None:
            stack.down()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def run(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from lakehouse.demo.producer import produce

    summary: dict[str, Any] = {"events": args.events, "rounds": args.rounds}
    if args.only_incremental:
        return {"incremental": incremental(settings, args)}
    topic = f"bench-clicks-{uuid.uuid4().hex[:6]}"
    table = f"bench.clicks_{uuid.uuid4().hex[:6]}"
    produced = produce(  # the generator's clock ticks 10 ms per event (TICK)
        settings, "clicks", count=args.events, topic=topic, fast=True, seed=7, progress=False,
        start=START,
    )  # fmt: skip
    print(f"produced {produced.delivered:,} clicks to {topic}", flush=True)
    bronze = _phase("bronze", table=table, topic=topic)
    print(f"  bronze   {bronze['records']:>10,} rows  {bronze['seconds']:6.2f} s", flush=True)
    rounds: dict[str, list[dict[str, Any]]] = {"ceiling": [], "silver": [], "peer": []}
    views = 0
    for n in range(args.rounds):
        ceiling = _phase("ceiling", table=table, topic=topic, round=n)
        views = ceiling["views"]
        rounds["ceiling"].append(ceiling)
        rounds["silver"].append(_phase("silver", table=table, topic=topic, round=n))
        if not args.skip_peer:
            rounds["peer"].append(run_peer(settings, topic, views))
        for name, runs in rounds.items():
            if runs:
                r = runs[-1]
                print(
                    f"  round {n + 1}  {name:8s} {r['records']:>10,} rows  {r['seconds']:7.2f} s"
                    f"  {r['cpu_seconds']:6.2f} s CPU  peak {r['peak_mb']:,.0f} MB",
                    flush=True,
                )
    medians = {name: _median(runs) for name, runs in rounds.items() if runs}
    a, b = medians["ceiling"]["seconds"], medians["silver"]["seconds"]
    summary.update(
        {
            "bronze": bronze,
            "median": medians,
            "seconds_each_round": {
                k: [round(r["seconds"], 3) for r in v] for k, v in rounds.items()
            },
            "silver_speed_over_ceiling": round(a / b, 3),  # goal >= 0.5
        }
    )
    if "peer" in medians:
        end_to_end = bronze["seconds"] + b
        summary["end_to_end_seconds"] = round(end_to_end, 3)
        summary["end_to_end_speed_over_peer"] = round(medians["peer"]["seconds"] / end_to_end, 2)
    if not args.skip_incremental:
        summary["incremental"] = incremental(settings, args)
    return summary


def incremental(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    tables = build_incremental(settings, args.big, args.small)
    runs: dict[str, list[dict[str, Any]]] = {"big": [], "small": []}
    for n in range(args.micro_rounds):
        micro_batch(settings, tables, args.big, args.micro, n)
        order = ("big", "small") if n % 2 == 0 else ("small", "big")
        for name in order:
            total = args.big + (n + 1) * args.micro
            r = _phase("incremental", table=tables[name], topic=f"bench-{name}", events_total=total)
            runs[name].append(r)
            print(
                f"  micro {n + 1} {name:5s} {r['records']:>6,} new rows  {r['seconds']:6.3f} s  "
                f"recomputed {r['recomputed']:,}  peak {r['peak_mb']:,.0f} MB",
                flush=True,
            )
    medians = {k: _median(v) for k, v in runs.items()}
    return {
        "big_rows": args.big,
        "small_rows": args.small,
        "micro_batch": args.micro,
        "median": medians,
        "seconds_each_round": _each_round(runs),
        "big_over_small": round(medians["big"]["seconds"] / medians["small"]["seconds"], 3),
    }


if __name__ == "__main__":
    main()
