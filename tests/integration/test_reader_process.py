"""The reader child process against the real broker: same batches as reading in process,
errors reach the parent, and the child never outlives its reader."""

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer

from lakehouse.config import BatchLimits
from lakehouse.demo.producer import produce
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.kafka.admin import ensure_topic, topic_state
from lakehouse.kafka.offsets import PartitionRange, plan_ranges
from lakehouse.kafka.reader import KafkaReadError, RawBatch, consumer_config, read_batches
from lakehouse.kafka.reader_process import ReaderProcess
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import assert_exactly_once, fresh_spec, ingest_once

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _topic_with_messages(settings: Settings, count: int) -> tuple[str, list[PartitionRange]]:
    """A 3-partition topic holding `count` messages, some keyless, some tombstones."""
    topic = f"reader-{uuid.uuid4().hex[:8]}"
    ensure_topic(settings, topic, partitions=3)
    producer = Producer(settings.kafka_client_config(acks="all", **{"linger.ms": 5}))  # type: ignore[arg-type]
    for i in range(count):
        key = None if i % 7 == 0 else f"k{i}".encode()
        value = None if i % 11 == 0 else f"value-{i}-é".encode() * (1 + i % 5)
        producer.produce(topic, key=key, value=value, partition=i % 3)
    assert producer.flush(30) == 0
    state = topic_state(settings, topic)
    return topic, plan_ranges(topic, {}, state.earliest, state.end)


def _clicks_with_bad_ones(stack: Settings, topic: str, count: int, *, seed: int) -> Any:
    """Demo clicks, 1% malformed, their event ids collected."""
    return produce(
        stack,
        "clicks",
        count=count,
        topic=topic,
        seed=seed,
        progress=False,
        malformed_fraction=0.01,
        collect_ids=True,
    )


def _with_reader_process(settings: Settings) -> Settings:
    """Ingestion reading through a reader process (the default reads columnar, where built)."""
    return settings.model_copy(update={"kafka_reader": "process"})


def _as_rows(batches: list[RawBatch]) -> list[tuple[object, ...]]:
    rows = []
    for b in batches:
        columns = (b.partitions, b.offsets, b.timestamps_ms, b.keys, b.values)
        rows += list(zip(*(c.to_pylist() for c in columns), strict=True))
    return rows


def test_child_reads_what_the_in_process_reader_reads(stack: Settings) -> None:
    topic, ranges = _topic_with_messages(stack, 2_500)
    consumer = Consumer(consumer_config(stack))
    try:
        here = list(read_batches(consumer, topic, ranges, max_records=700, max_bytes=1 << 20))
    finally:
        consumer.close()
    with ReaderProcess(consumer_config(stack), topic) as reader:
        there = list(reader.batches(ranges, max_records=700, max_bytes=1 << 20))

    # Which partitions fill which batch depends on fetch timing: compare the messages, and
    # check each batch on its own.
    assert sorted(_as_rows(there)) == sorted(_as_rows(here))
    assert len(_as_rows(there)) == 2_500 and len(there) >= 4
    for b in there:
        assert 0 < len(b) <= 700
        assert b.values.type == pa.large_binary() and b.partitions.type == pa.int32()
        offsets: dict[int, list[int]] = {}
        for partition, offset in zip(b.partitions.to_pylist(), b.offsets.to_pylist(), strict=True):
            offsets.setdefault(partition, []).append(offset)
        for partition, taken in offsets.items():  # exactly [start, next) of each partition
            assert taken == list(range(b.start_offsets[partition], b.next_offsets[partition]))
        sizes = [
            len(v or b"") + len(k or b"")
            for k, v in zip(b.keys.to_pylist(), b.values.to_pylist(), strict=True)
        ]
        assert b.nbytes == sum(sizes)
    reached: dict[int, int] = {}
    for b in there:
        reached.update(b.next_offsets)
    assert reached == {r.partition: r.end for r in ranges}


def test_a_read_error_reaches_the_parent_as_kafka_read_error(stack: Settings) -> None:
    topic, ranges = _topic_with_messages(stack, 30)
    beyond = [PartitionRange(r.partition, r.end + 1_000, r.end + 2_000) for r in ranges]
    with (
        ReaderProcess(consumer_config(stack), topic) as reader,
        pytest.raises(KafkaReadError, match=topic),
    ):
        list(reader.batches(beyond, max_records=100, max_bytes=1 << 20))


def test_the_child_ends_when_the_parent_stops_early(stack: Settings) -> None:
    topic, ranges = _topic_with_messages(stack, 900)
    reader = ReaderProcess(consumer_config(stack), topic)
    batches = reader.batches(ranges, max_records=100, max_bytes=1 << 20)
    first = next(batches)
    assert len(first) == 100
    reader.close()
    assert reader.returncode is not None


def test_ingest_reading_in_process_is_exactly_once_too(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=700))
    report = _clicks_with_bad_ones(stack, spec.topic, 2_000, seed=21)
    in_process = stack.model_copy(update={"kafka_reader": "thread"})
    done = ingest_once(in_process, spec)
    assert done.batches >= 3 and done.records_written + done.dead_letters == 2_000
    assert_exactly_once(stack, spec, set(report.ids))


def test_a_reader_child_killed_mid_run_fails_the_run_and_loses_nothing(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches larger than the pipe holds, so the child is still reading when it dies.
    spec = fresh_spec(batch=BatchLimits(max_records=5_000))
    report = produce(
        stack, "clicks", count=30_000, topic=spec.topic, seed=22, progress=False, collect_ids=True
    )
    real_batches = ReaderProcess.batches

    def batches_then_kill(self: ReaderProcess, *args: Any, **kwargs: Any) -> Iterator[RawBatch]:
        for index, batch in enumerate(real_batches(self, *args, **kwargs)):
            yield batch
            if index == 1:
                os.kill(self._child.pid, signal.SIGKILL)  # the child dies mid-run

    monkeypatch.setattr(ReaderProcess, "batches", batches_then_kill)
    with pytest.raises(KafkaReadError, match="reader process ended"):
        ingest_once(_with_reader_process(stack), spec)
    monkeypatch.undo()
    partial = load_catalog(stack).load_table(spec.table).scan().to_arrow().num_rows
    assert 0 < partial < 30_000  # what was committed stays committed
    ingest_once(_with_reader_process(stack), spec)
    assert_exactly_once(stack, spec, set(report.ids))


def test_the_child_says_when_it_is_ready(stack: Settings) -> None:
    topic, ranges = _topic_with_messages(stack, 300)
    with ReaderProcess(consumer_config(stack), topic) as reader:
        deadline = time.monotonic() + 30
        while not reader.ready():
            assert time.monotonic() < deadline, "the reader process never became ready"
            time.sleep(0.01)
        assert reader.ready()  # stays ready; the line is read once
        there = list(reader.batches(ranges, max_records=100, max_bytes=1 << 20))
    assert len(_as_rows(there)) == 300


@pytest.mark.parametrize("ready_after", [2, None], ids=["hand-over", "child-never-ready"])
def test_a_backlog_starts_here_and_goes_on_in_the_child_exactly_once(
    stack: Settings, monkeypatch: pytest.MonkeyPatch, ready_after: int | None
) -> None:
    """Quarter batches are read in this process until the child is ready, the rest by it."""
    spec = fresh_spec(batch=BatchLimits(max_records=2_000))
    report = _clicks_with_bad_ones(stack, spec.topic, 12_000, seed=23)
    asked = 0
    from_child = 0
    real_batches = ReaderProcess.batches

    def ready(self: ReaderProcess) -> bool:
        nonlocal asked
        asked += 1
        return ready_after is not None and asked > ready_after

    def counted(self: ReaderProcess, *args: Any, **kwargs: Any) -> Iterator[RawBatch]:
        nonlocal from_child
        for batch in real_batches(self, *args, **kwargs):
            from_child += len(batch)
            yield batch

    monkeypatch.setattr(ReaderProcess, "ready", ready)
    monkeypatch.setattr(ReaderProcess, "batches", counted)
    done = ingest_once(_with_reader_process(stack), spec)
    assert done.records_written + done.dead_letters == 12_000
    if ready_after is None:
        assert from_child == 0  # the child was never ready: every batch was read here
        assert done.batches == 12_000 // 500
    else:
        assert from_child == 12_000 - 3 * 500  # three quarter batches here, the rest there
    assert_exactly_once(stack, spec, set(report.ids))


def test_a_backlog_starts_and_ends_with_small_batches(stack: Settings) -> None:
    """The first batch and the last `edge_max_records` offsets are small, in both readers."""
    topic, ranges = _topic_with_messages(stack, 2_500)
    limits = {"max_records": 700, "max_bytes": 1 << 20, "edge_max_records": 100}
    consumer = Consumer(consumer_config(stack))
    try:
        here = list(read_batches(consumer, topic, ranges, **limits))  # type: ignore[arg-type]
    finally:
        consumer.close()
    with ReaderProcess(consumer_config(stack), topic) as reader:
        there = list(reader.batches(ranges, **limits))  # type: ignore[arg-type]
    for batches in (here, there):
        assert [len(b) for b in batches] == [100, 700, 700, 700, 200, 100]
    assert sorted(_as_rows(there)) == sorted(_as_rows(here))


def test_a_cut_ends_the_batch_in_hand_and_loses_nothing(stack: Settings) -> None:
    topic, ranges = _topic_with_messages(stack, 2_500)
    consumer = Consumer(consumer_config(stack))
    try:
        batches = list(
            read_batches(
                consumer,
                topic,
                ranges,
                max_records=2_500,
                max_bytes=1 << 20,
                cut=lambda: True,  # each batch ends after its first consume call
            )
        )
    finally:
        consumer.close()
    assert len(batches) > 1  # without cuts one batch would hold everything
    rows = _as_rows(batches)
    assert len(rows) == len(set(rows)) == 2_500
    position = {r.partition: r.start for r in ranges}
    for b in batches:  # each batch starts where the one before ended
        assert b.start_offsets == {p: position[p] for p in b.start_offsets}
        position.update(b.next_offsets)
    assert position == {r.partition: r.end for r in ranges}
