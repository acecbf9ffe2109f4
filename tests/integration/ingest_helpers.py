"""Helpers for the ingestion integration tests: fresh streams, the oracle, worker processes."""

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from confluent_kafka import Consumer, TopicPartition
from pyiceberg.expressions import EqualTo

from lakehouse.audit import check_conservation, check_offset_chain
from lakehouse.config import StreamSpec
from lakehouse.demo.malformed import MALFORMED_HEADER
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.kafka.admin import earliest_offsets, end_offsets
from lakehouse.settings import Settings

DEAD_LETTERS = "bronze.dead_letters"
ROOT = Path(__file__).resolve().parents[2]


def fresh_spec(stream: str = "clicks", **overrides: Any) -> StreamSpec:
    """A stream declaration on a topic and table no other test uses."""
    suffix = uuid.uuid4().hex[:8]
    body: dict[str, Any] = {
        "name": f"{stream}_{suffix}",
        "topic": f"{stream}-{suffix}",
        "event_time": "event_time",
        "partition_by": ["day(event_time)"],
    }
    body.update(overrides)
    return StreamSpec(**body)


@dataclass
class TopicTruth:
    """What is really in the topic: malformed offsets (by header) and all offsets."""

    all_offsets: set[tuple[int, int]]
    malformed: dict[tuple[int, int], str]


def topic_truth(settings: Settings, topic: str) -> TopicTruth:
    ends = end_offsets(settings, topic)
    starts = earliest_offsets(settings, topic)
    consumer = Consumer(settings.kafka_client_config(**{"group.id": f"truth-{uuid.uuid4().hex}"}))
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    wanted = sum(ends[p] - starts[p] for p in ends)
    truth = TopicTruth(set(), {})
    idle = 0
    try:
        while len(truth.all_offsets) < wanted and idle < 20:
            batch = consumer.consume(10_000, timeout=0.5)
            idle = 0 if batch else idle + 1
            for m in batch:
                assert m.error() is None
                where = (m.partition(), m.offset())
                truth.all_offsets.add(where)
                kind = dict(m.headers() or []).get(MALFORMED_HEADER)
                if kind:
                    truth.malformed[where] = kind.decode()
    finally:
        consumer.close()
    return truth


def bronze_frame(settings: Settings, spec: StreamSpec) -> pl.DataFrame:
    table = load_catalog(settings).load_table(spec.table)
    return pl.from_arrow(table.scan().to_arrow())


def dead_letter_frame(settings: Settings, spec: StreamSpec) -> pl.DataFrame:
    table = table_or_none(load_catalog(settings), DEAD_LETTERS)
    if table is None:
        return pl.DataFrame({"partition": [], "offset": [], "error_kind": []})
    return pl.from_arrow(table.scan(row_filter=EqualTo("topic", spec.topic)).to_arrow())


def assert_exactly_once(
    settings: Settings,
    spec: StreamSpec,
    expected_ids: set[str],
    dead_offsets: set[tuple[int, int]] | None = None,
) -> None:
    """The oracle: every good event once, every bad offset dead-lettered once, nothing else.

    The bad offsets are the malformed messages (by header) unless `dead_offsets` names them.
    A dead letter whose message is in bronze was replayed (marked so or not yet): it counts as
    the row, and is no longer one of the bad offsets.
    """
    rows = bronze_frame(settings, spec)
    ids = rows["event_id"].to_list()
    assert len(ids) == len(set(ids)), "duplicate event_ids in bronze"
    assert set(ids) == expected_ids, (
        f"missing {len(expected_ids - set(ids))}, unexpected {len(set(ids) - expected_ids)}"
    )
    truth = topic_truth(settings, spec.topic)
    dead = dead_letter_frame(settings, spec)
    dead_letter_offsets = list(
        zip(dead["partition"].to_list(), dead["offset"].to_list(), strict=True)
    )
    assert len(dead_letter_offsets) == len(set(dead_letter_offsets)), "a dead letter written twice"
    row_offsets = set(
        zip(rows["_kafka_partition"].to_list(), rows["_kafka_offset"].to_list(), strict=True)
    )
    if "replayed_at" in dead.columns:  # marked replayed: the message must be in bronze
        marked = dead.filter(dead["replayed_at"].is_not_null())
        assert set(zip(marked["partition"], marked["offset"], strict=True)) <= row_offsets
    waiting = set(dead_letter_offsets) - row_offsets
    expected_dead = set(truth.malformed) if dead_offsets is None else dead_offsets
    assert waiting == expected_dead
    assert row_offsets | waiting == truth.all_offsets
    catalog = load_catalog(settings)
    table = catalog.load_table(spec.table)
    chain = check_offset_chain(table, spec.topic)
    assert chain.ok, chain.problems
    conservation = check_conservation(table, table_or_none(catalog, DEAD_LETTERS), spec.topic)
    assert conservation.ok, conservation


def run_worker(
    spec: StreamSpec, *, kill_at: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`ingest` in a separate process; `kill_at` = before_commit | after_commit SIGKILLs itself."""
    env = {**os.environ, **(extra_env or {})}
    env["LAKEHOUSE_TEST_SPEC"] = spec.model_dump_json()
    if kill_at:
        env["LAKEHOUSE_TEST_KILL_AT"] = kill_at
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("ingest_worker.py"))],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def worker_result(proc: subprocess.Popen[bytes], timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])


def ingest_once(settings: Settings, spec: StreamSpec, **kwargs: Any) -> Any:
    """One `lakehouse.ingest.ingest` run in this process, with the shared dead-letter table."""
    from lakehouse.ingest import ingest

    kwargs.setdefault("run_id", f"test-{uuid.uuid4().hex[:6]}")
    return ingest(settings, spec, dead_letter_table=DEAD_LETTERS, **kwargs)


def iceberg_rows(settings: Settings, spec: StreamSpec) -> list[dict[str, Any]]:
    """Every row of the bronze table as Python values, read through a fresh catalog object."""
    table = load_catalog(settings).load_table(spec.table)
    return table.scan().to_arrow().to_pylist()
