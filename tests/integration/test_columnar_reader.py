"""The columnar reader (librdkafka straight into Arrow) against the real broker: the same
messages, offsets and batch boundaries as confluent-kafka's reader, for every kind of
message, and ingestion through it exactly once."""

import threading
import time
import uuid

import psutil
import pyarrow as pa
import pytest
from confluent_kafka import Consumer, Producer

from lakehouse.config import BatchLimits
from lakehouse.kafka.admin import ensure_topic, topic_state
from lakehouse.kafka.columnar import ColumnarConsumer, unavailable_reason
from lakehouse.kafka.offsets import PartitionRange, plan_ranges
from lakehouse.kafka.reader import KafkaReadError, RawBatch, consumer_config, read_batches
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import assert_exactly_once, fresh_spec, ingest_once
from tests.integration.test_reader_process import _clicks_with_bad_ones

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_c_module_was_built_and_binds_to_confluent_kafkas_librdkafka() -> None:
    # CI installs with a C compiler: a reader silently falling back would hide a build break.
    assert unavailable_reason() is None


def _mixed_topic(settings: Settings, count: int) -> tuple[str, list[PartitionRange]]:
    """3 partitions: keyless messages, tombstones, empty values and keys, headers, sizes
    from 0 to ~40 KB, explicit timestamps."""
    topic = f"columnar-{uuid.uuid4().hex[:8]}"
    ensure_topic(settings, topic, partitions=3)
    producer = Producer(settings.kafka_client_config(acks="all", **{"linger.ms": 5}))  # type: ignore[arg-type]
    for i in range(count):
        key = None if i % 7 == 0 else (b"" if i % 13 == 0 else f"k{i}".encode())
        if i % 11 == 0:
            value = None
        elif i % 17 == 0:
            value = b""
        else:
            value = f"value-{i}-é".encode() * (1 + (i * 7919) % 997 if i % 101 == 0 else 1 + i % 5)
        headers = [("h", str(i).encode())] if i % 3 == 0 else None
        producer.produce(
            topic, key=key, value=value, partition=i % 3, headers=headers, timestamp=1_700_000 + i
        )
    assert producer.flush(30) == 0
    state = topic_state(settings, topic)
    return topic, plan_ranges(topic, {}, state.earliest, state.end)


def _confluent(settings: Settings, topic: str, ranges: list[PartitionRange], **limits: int):  # type: ignore[no-untyped-def]
    consumer = Consumer(consumer_config(settings))
    try:
        return list(read_batches(consumer, topic, ranges, **limits))  # type: ignore[arg-type]
    finally:
        consumer.close()


def _columnar(settings: Settings, topic: str, ranges: list[PartitionRange], **limits: int):  # type: ignore[no-untyped-def]
    with ColumnarConsumer(consumer_config(settings)) as consumer:
        return list(consumer.read_batches(topic, ranges, **limits))  # type: ignore[arg-type]


def _rows(batches: list[RawBatch]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for b in batches:
        columns = (b.partitions, b.offsets, b.timestamps_ms, b.keys, b.values)
        rows += zip(*(c.to_pylist() for c in columns), strict=True)
    return rows


def _check_batch(b: RawBatch, max_records: int) -> None:
    """Each batch: valid Arrow of the reader's types, exactly [start, next) of each partition,
    its byte count."""
    assert 0 < len(b) <= max_records
    for column, kind in (
        (b.partitions, pa.int32()),
        (b.offsets, pa.int64()),
        (b.timestamps_ms, pa.int64()),
        (b.keys, pa.large_binary()),
        (b.values, pa.large_binary()),
    ):
        assert column.type == kind and len(column) == len(b)
        column.validate(full=True)
    taken: dict[int, list[int]] = {}
    for partition, offset in zip(b.partitions.to_pylist(), b.offsets.to_pylist(), strict=True):
        taken.setdefault(partition, []).append(offset)
    for partition, offsets in taken.items():
        assert offsets == list(range(b.start_offsets[partition], b.next_offsets[partition]))
    sizes = [
        len(v or b"") + len(k or b"")
        for k, v in zip(b.keys.to_pylist(), b.values.to_pylist(), strict=True)
    ]
    assert b.nbytes == sum(sizes)


def test_reads_every_message_as_confluent_kafka_does(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 5_000)
    limits = {"max_records": 700, "max_bytes": 1 << 20}
    here = _confluent(stack, topic, ranges, **limits)
    there = _columnar(stack, topic, ranges, **limits)

    assert sorted(_rows(there)) == sorted(_rows(here))
    rows = _rows(there)
    assert len(rows) == 5_000
    assert any(r[3] is None for r in rows) and any(r[3] == b"" for r in rows)  # key null / empty
    assert any(r[4] is None for r in rows) and any(r[4] == b"" for r in rows)  # value likewise
    assert {r[2] for r in rows} == {1_700_000 + i for i in range(5_000)}
    for b in there:
        _check_batch(b, 700)
    reached: dict[int, int] = {}
    for b in there:
        assert all(reached.get(p, r) == r for p, r in b.start_offsets.items())  # contiguous
        reached.update(b.next_offsets)
    assert reached == {r.partition: r.end for r in ranges}


def test_edges_cut_batches_as_confluent_kafka_does(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 2_500)
    edges = {"max_records": 700, "max_bytes": 1 << 20, "edge_max_records": 100}
    here = _confluent(stack, topic, ranges, **edges)
    there = _columnar(stack, topic, ranges, **edges)
    for batches in (here, there):
        assert [len(b) for b in batches] == [100, 700, 700, 700, 200, 100]
    assert sorted(_rows(there)) == sorted(_rows(here))


@pytest.mark.parametrize("max_bytes", [20_000, 5_000])
def test_a_batch_never_passes_its_byte_limit(stack: Settings, max_bytes: int) -> None:
    """Exact limits: what does not fit waits for the next batch; a single message larger
    than the limit comes alone. (confluent-kafka's reader stops at a consume boundary.)"""
    topic, ranges = _mixed_topic(stack, 2_500)
    batches = _columnar(stack, topic, ranges, max_records=10_000, max_bytes=max_bytes)
    assert len(batches) > 5
    for b in batches:
        _check_batch(b, 10_000)
        assert b.nbytes <= max_bytes or len(b) == 1
    if max_bytes == 5_000:
        assert any(len(b) == 1 and b.nbytes > 5_000 for b in batches)
    everything = _confluent(stack, topic, ranges, max_records=10_000, max_bytes=1 << 30)
    assert sorted(_rows(batches)) == sorted(_rows(everything))


def test_transactions_aborted_messages_and_markers_are_skipped(stack: Settings) -> None:
    topic = f"columnar-tx-{uuid.uuid4().hex[:8]}"
    ensure_topic(stack, topic, partitions=2)
    producer = Producer(
        stack.kafka_client_config(**{"transactional.id": f"tx-{uuid.uuid4().hex}"})  # type: ignore[arg-type]
    )
    producer.init_transactions(30)
    kept = 0
    for round_number in range(6):
        producer.begin_transaction()
        for i in range(50):
            producer.produce(topic, value=f"{round_number}-{i}".encode(), partition=i % 2)
        if round_number % 3 == 1:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
            kept += 50
    state = topic_state(stack, topic)
    ranges = plan_ranges(topic, {}, state.earliest, state.end)
    limits = {"max_records": 60, "max_bytes": 1 << 20}
    there = _columnar(stack, topic, ranges, **limits)
    here = _confluent(stack, topic, ranges, **limits)
    assert sorted(_rows(there)) == sorted(_rows(here))
    values = [r[4] for r in _rows(there)]
    assert len(values) == kept and not any(v.startswith((b"1-", b"4-")) for v in values)
    reached: dict[int, int] = {}
    for b in there:
        reached.update(b.next_offsets)
    assert reached == {r.partition: r.end for r in ranges}  # past the last commit marker


def test_prepare_learns_the_topic_before_reading(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 100)
    with ColumnarConsumer(consumer_config(stack)) as consumer:
        assert consumer.prepare(topic)
        batches = list(consumer.read_batches(topic, ranges, max_records=1_000, max_bytes=1 << 20))
    assert sum(len(b) for b in batches) == 100


def test_a_read_error_is_a_kafka_read_error(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 30)
    beyond = [PartitionRange(r.partition, r.end + 1_000, r.end + 2_000) for r in ranges]
    with pytest.raises(KafkaReadError, match=topic):
        _columnar(stack, topic, beyond, max_records=100, max_bytes=1 << 20)


def test_a_bad_property_is_named(stack: Settings) -> None:
    with pytest.raises(KafkaReadError, match=r"fetch\.max\.bytez"):
        ColumnarConsumer({**consumer_config(stack), "fetch.max.bytez": "1"})
    with pytest.raises(KafkaReadError, match="error_cb"):
        ColumnarConsumer({**consumer_config(stack), "error_cb": print})


def test_stop_ends_reading(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 3_000)
    stopped = threading.Event()
    with ColumnarConsumer(consumer_config(stack)) as consumer:
        batches = consumer.read_batches(
            topic, ranges, max_records=500, max_bytes=1 << 20, stop=stopped.is_set
        )
        first = next(batches)
        stopped.set()
        assert list(batches) == []  # nothing more is read or yielded
        assert len(first) == 500


def test_stop_reading_ends_a_read_waiting_for_offsets(stack: Settings) -> None:
    """A range past the log's end waits for messages (up to the idle timeout); another
    thread's `stop_reading` ends it at once, with what was read."""
    topic, ranges = _mixed_topic(stack, 300)
    waiting = [PartitionRange(r.partition, r.start, r.end + 50) for r in ranges]
    with ColumnarConsumer(consumer_config(stack)) as consumer:
        timer = threading.Timer(1.0, consumer.stop_reading)
        started = time.monotonic()
        timer.start()
        batches = list(
            consumer.read_batches(
                topic, waiting, max_records=10_000, max_bytes=1 << 30, idle_timeout_s=60
            )
        )
        took = time.monotonic() - started
        timer.join()
        assert took < 10, f"stop_reading took {took:.1f} s to end the read"
        assert sum(len(b) for b in batches) == 300
        assert batches[-1].next_offsets == {r.partition: r.end for r in ranges}
        # The consumer is usable again after a new assignment.
        again = list(consumer.read_batches(topic, ranges, max_records=10_000, max_bytes=1 << 30))
        assert sum(len(b) for b in again) == 300


def test_a_reader_left_open_ends_quietly_after_its_consumer_closed(stack: Settings) -> None:
    """A failed run closes its consumers before the reading generator is finalized: that
    must not raise (it printed 'the consumer is closed' over the run's real error)."""
    topic, ranges = _mixed_topic(stack, 1_000)
    consumer = ColumnarConsumer(consumer_config(stack))
    batches = consumer.read_batches(topic, ranges, max_records=100, max_bytes=1 << 20)
    assert len(next(batches)) == 100
    consumer.close()
    batches.close()  # runs the generator's cleanup: no error


def test_memory_is_given_back(stack: Settings) -> None:
    topic, ranges = _mixed_topic(stack, 20_000)
    process = psutil.Process()
    with ColumnarConsumer(consumer_config(stack)) as consumer:

        def one_pass() -> int:
            batches = consumer.read_batches(topic, ranges, max_records=5_000, max_bytes=1 << 30)
            return sum(b.nbytes + 24 * len(b) for b in batches)  # keys, values, 3 numbers

        for _ in range(3):  # warm: allocator arenas, librdkafka's buffers
            size = one_pass()
        before = process.memory_info().rss
        for _ in range(15):
            one_pass()
        grown = process.memory_info().rss - before
    assert grown < 3 * size, f"{grown:,} bytes kept after 15 passes of {size:,}"


def test_ingest_reads_columnar_exactly_once(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=700))
    report = _clicks_with_bad_ones(stack, spec.topic, 3_000, seed=31)
    columnar = stack.model_copy(update={"kafka_reader": "columnar"})
    done = ingest_once(columnar, spec)
    assert done.batches >= 5 and done.records_written + done.dead_letters == 3_000
    assert done.dead_letters > 0
    assert_exactly_once(stack, spec, set(report.ids))
