"""Ingestion throughput on the real broker, three ways, measured in one run:

  (a) raw    confluent-kafka reading every message, decoding nothing: the ceiling;
  (a') columnar the product's own reader (librdkafka into Arrow, lakehouse.kafka.columnar)
             reading every message, decoding nothing: how much of (b) is its reader;
  (b) bronze the product: Kafka → decode (registry) → Iceberg commit with offsets;
  (c) naive  what a user would hand-write: fastavro.schemaless_reader per message,
             pyarrow.Table.from_pylist, table.append.

.venv/bin/python bench/ingest.py [--events 1000000] [--rounds 3]

Uses the stack named by LAKEHOUSE_* if `--use-running`, else starts its own on free ports in
a temporary home and stops it afterwards. The broker and registry are warmed first
(`--warm-passes` unmeasured reads of the topic), then the three phases run in interleaved
rounds and each phase's median run counts. Each phase runs in its own process so its peak
memory (ru_maxrss) and CPU time are its own. Prints records/s, the ratios b/a and b/c, peak
MB and CPU seconds (on a shared machine CPU seconds are the steadier figure), and writes
them to bench/results/ingest.json.
"""

import argparse
import gc
import io
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _peak_mb() -> float:
    """Peak resident memory of this process (a bronze reader child is counted apart)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_peak_mb() -> float:
    """Peak resident memory of the largest child process ended so far (with
    LAKEHOUSE_KAFKA_READER=process, the reader; else any short-lived helper a library
    forks, as `ldconfig -p` was before `huge_pages` stopped calling `find_library`)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time of this process (or of its ended children: the bronze path reads Kafka in a
    child process), every thread (librdkafka's, pyiceberg's writers) included."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _Clock:
    """Wall and CPU time since it was made: the work only, not the imports before it."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.own = _cpu_seconds()
        self.children = _cpu_seconds(resource.RUSAGE_CHILDREN)

    def read(self) -> dict[str, float]:
        own = _cpu_seconds() - self.own
        children = _cpu_seconds(resource.RUSAGE_CHILDREN) - self.children
        return {
            "seconds": time.perf_counter() - self.wall,
            "cpu_seconds": round(own + children, 2),
            "child_cpu_seconds": round(children, 2),
        }


def _all_messages(settings, topic: str):  # type: ignore[no-untyped-def]
    """Yield every message of `topic` once (assign + seek, as ingestion does)."""
    from confluent_kafka import Consumer, TopicPartition

    from lakehouse.kafka.admin import earliest_offsets, end_offsets
    from lakehouse.kafka.reader import CONSUME_MESSAGES, consumer_config

    ends = end_offsets(settings, topic)
    starts = earliest_offsets(settings, topic)
    remaining = sum(ends[p] - starts[p] for p in ends)
    consumer = Consumer({**consumer_config(settings), "group.id": f"bench-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    try:
        while remaining > 0:
            # never more than is left: consume() would wait out its timeout at the end; the
            # bronze reader's call size, the fastest measured for a bare loop too
            for message in consumer.consume(min(CONSUME_MESSAGES, remaining), timeout=1.0):
                if message.error() is None:
                    remaining -= 1
                    yield message
    finally:
        consumer.close()


def phase_raw(settings, topic: str, round_number: int) -> dict:  # type: ignore[no-untyped-def]
    # The ceiling gets what the bronze reader does: no cyclic GC while messages are read.
    gc.disable()
    clock = _Clock()
    count = 0
    nbytes = 0
    for message in _all_messages(settings, topic):
        nbytes += len(message.value())
        count += 1
    timing = clock.read()
    gc.enable()
    return {"records": count, "bytes": nbytes, **timing}


def phase_columnar(settings, topic: str, round_number: int) -> dict:  # type: ignore[no-untyped-def]
    from lakehouse.kafka.admin import earliest_offsets, end_offsets
    from lakehouse.kafka.columnar import ColumnarConsumer
    from lakehouse.kafka.offsets import PartitionRange
    from lakehouse.kafka.reader import consumer_config

    ends = end_offsets(settings, topic)
    starts = earliest_offsets(settings, topic)
    ranges = [PartitionRange(p, starts[p], ends[p]) for p in ends]
    config = {**consumer_config(settings), "group.id": f"bench-{uuid.uuid4().hex}"}
    clock = _Clock()  # as the raw phase: connecting included
    count = nbytes = 0
    with ColumnarConsumer(config) as consumer:
        consumer.prepare(topic)
        for batch in consumer.read_batches(topic, ranges, max_records=100_000, max_bytes=1 << 26):
            count += len(batch)
            nbytes += batch.nbytes
    return {"records": count, "bytes": nbytes, **clock.read()}


def _table_name(kind: str, topic: str, round_number: int) -> str:
    return f"bench.{kind}_{topic.replace('-', '_')}_{round_number}"


def phase_bronze(settings, topic: str, round_number: int) -> dict:  # type: ignore[no-untyped-def]
    from lakehouse.config import load_declarations
    from lakehouse.ingest import ingest

    clicks = load_declarations(ROOT / "streams.yaml").streams["clicks"]
    spec = clicks.model_copy(
        update={"topic": topic, "table": _table_name("bronze", topic, round_number)}
    )
    clock = _Clock()
    report = ingest(settings, spec, run_id="bench", dead_letter_table="bench.dead_letters")
    return {
        "records": report.records_written,
        "kafka_reader": report.kafka_reader,
        "batches": report.batches,
        "dead_letters": report.dead_letters,
        **clock.read(),
    }


def phase_naive(settings, topic: str, round_number: int) -> dict:  # type: ignore[no-untyped-def]
    import fastavro
    import pyarrow as pa
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from lakehouse.iceberg.catalog import load_catalog

    registry = SchemaRegistryClient(settings.registry_client_config())
    parsed: dict[int, object] = {}
    catalog = load_catalog(settings)
    catalog.create_namespace_if_not_exists("bench")
    name = _table_name("naive", topic, round_number)
    table = None
    rows: list[dict] = []
    count = 0
    clock = _Clock()  # after the catalog and registry clients: bronze's clock includes its own

    def flush() -> None:
        nonlocal table, rows
        if not rows:
            return
        arrow = pa.Table.from_pylist(rows)
        if table is None:
            table = catalog.create_table(name, schema=arrow.schema)
        table.append(arrow)
        rows = []

    for message in _all_messages(settings, topic):
        value = message.value()
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in parsed:
            text = registry.get_schema(schema_id).schema_str
            parsed[schema_id] = fastavro.parse_schema(json.loads(text))
        rows.append(fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed[schema_id], None))
        count += 1
        if len(rows) >= 100_000:
            flush()
    flush()
    return {"records": count, **clock.read()}


def phase_warm(settings, topic: str, round_number: int) -> dict:  # type: ignore[no-untyped-def]
    """Not measured: one pass over the topic and a lookup of its writer schema."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    registry = SchemaRegistryClient(settings.registry_client_config())
    schema_ids = set()
    for message in _all_messages(settings, topic):
        value = message.value() or b""
        if len(value) > 5 and value[0] == 0:
            schema_ids.add(int.from_bytes(value[1:5], "big"))
    for schema_id in schema_ids:
        registry.get_schema(schema_id)
    return {"schema_ids": sorted(schema_ids)}


PHASES = {
    "warm": phase_warm,
    "raw": phase_raw,
    "columnar": phase_columnar,
    "bronze": phase_bronze,
    "naive": phase_naive,
}


def _median_run(runs: list[dict]) -> dict:
    """The run with the median duration (an odd count gives a real run)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def run_phase(name: str, topic: str, round_number: int = 0) -> dict:
    """Run one phase in a child process; returns its figures with its own peak memory."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--topic", topic, "--round", str(round_number)],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--use-running", action="store_true")
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("--topic")
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of the three phases (medians)"
    )
    parser.add_argument(
        "--warm-passes", type=int, default=5, help="unmeasured reads of the topic before the rounds"
    )
    args = parser.parse_args()

    from lakehouse.settings import Settings

    if args.phase:
        settings = Settings()
        result = PHASES[args.phase](settings, args.topic, args.round)
        peaks = {"peak_mb": round(_peak_mb(), 1), "child_peak_mb": round(_child_peak_mb(), 1)}
        print(json.dumps({**result, **peaks}))
        return

    stack = None
    if not args.use_running:
        from lakehouse.stack import LocalStack

        home = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
        os.environ.update(
            {
                "LAKEHOUSE_HOME": str(home),
                "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}",
                "LAKEHOUSE_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{_free_port()}/apis/ccompat/v7",
            }
        )
        stack = LocalStack(Settings())
        stack.up()
    try:
        from lakehouse.demo.producer import produce

        settings = Settings()
        topic = f"bench-clicks-{uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        produced = produce(
            settings, "clicks", count=args.events, topic=topic, fast=True, seed=1, progress=True
        )
        print(
            f"produced {produced.delivered:,} click events in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        # The broker's 100 MB of fresh log is written back to disk in the background for tens
        # of seconds: flush it now, so no phase pays for the production.
        os.sync()
        time.sleep(2)
        # A running broker and registry have served reads before: a fresh JVM compiles its
        # fetch path during the first reads (its C2 compiler thread kept working for several
        # passes; the broker took 0.3-0.7 s of CPU per pass, ~0.15 s once warm, on the cores
        # the phases share). Unmeasured passes and a schema lookup warm them for every phase.
        for _ in range(args.warm_passes):
            run_phase("warm", topic)
        # Interleaved rounds, medians: the machine's speed drifts by ±15% within minutes.
        rounds: dict[str, list[dict]] = {n: [] for n in ("raw", "columnar", "bronze", "naive")}
        for round_number in range(args.rounds):
            for name in rounds:
                r = run_phase(name, topic, round_number)
                rounds[name].append(r)
                print(
                    f"  round {round_number + 1}  {name:8s} {r['records']:>10,} records  "
                    f"{r['records'] / r['seconds']:>12,.0f} rec/s  {r['cpu_seconds']:6.2f} s CPU  "
                    f"peak {r['peak_mb']:,.0f} MB",
                    flush=True,
                )
        results = {name: _median_run(runs) for name, runs in rounds.items()}
        rate = {k: v["records"] / v["seconds"] for k, v in results.items()}
        summary = {
            "events": args.events,
            "rounds": args.rounds,
            "records_per_second": {k: round(v) for k, v in rate.items()},
            "bronze_over_raw": round(rate["bronze"] / rate["raw"], 3),
            "bronze_over_naive": round(rate["bronze"] / rate["naive"], 2),
            "bronze_over_columnar_read": round(rate["bronze"] / rate["columnar"], 3),
            "records_per_second_each_round": {
                k: [round(r["records"] / r["seconds"]) for r in runs] for k, runs in rounds.items()
            },
            "peak_mb": {k: max(r["peak_mb"] for r in runs) for k, runs in rounds.items()},
            "bronze_kafka_reader": results["bronze"]["kafka_reader"],
            "cpu_seconds": {k: v["cpu_seconds"] for k, v in results.items()},
        }
        print(json.dumps(summary, indent=2))
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "ingest.json").write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        if stack is not None:
            stack.down()
            shutil.rmtree(home, ignore_errors=True)  # its broker data and catalog


if __name__ == "__main__":
    main()
