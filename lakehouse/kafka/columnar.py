"""Read bounded offset ranges from Kafka straight into Arrow columns, no Python object per message.

confluent-kafka gives Python one `Message` (and two `bytes`) per message: at a million messages
that is most of ingestion's CPU time, spent holding the GIL. `ColumnarConsumer` drives the same
librdkafka, the copy confluent-kafka ships, from the small C module `_rdkafka_columns`: it
copies each batch's messages into column buffers with the GIL released, and the batch arrives
as the `RawBatch` `reader.read_batches` yields, with the same cursor rules (assign and seek,
a partition paused at its end, markers and compacted offsets skipped, record and byte limits).
Kafka itself (fetching, the protocol, security, transactions) stays librdkafka's.

The module is compiled when the package is installed; where it could not be (no C compiler),
`unavailable_reason()` says why and ingestion reads through confluent-kafka instead.
"""

import contextlib
import functools
import glob
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pyarrow as pa

from lakehouse.kafka.offsets import PartitionRange
from lakehouse.kafka.reader import KafkaReadError, RawBatch, batch_limit

# Messages librdkafka hands over per call; the GIL is not held meanwhile, so larger is cheaper
# (1M demo events: 2,000 → 10,000 cut the read's CPU by ~15%).
CHUNK_MESSAGES = 10_000


def librdkafka_path() -> str | None:
    """The librdkafka confluent-kafka runs on (loaded once it is imported), or None."""
    import confluent_kafka

    # Loaded already: the exact file in use (wheel, distribution package or own build).
    with (
        contextlib.suppress(OSError),
        open("/proc/self/maps", encoding="utf-8", errors="replace") as maps,
    ):
        for line in maps:  # Linux; elsewhere the wheels' own layout below
            path = line.rstrip("\n").split(maxsplit=5)[-1]
            if "librdkafka" in os.path.basename(path) and os.path.isfile(path):
                return path
    package = Path(confluent_kafka.__file__).parent
    for pattern in ("../confluent_kafka.libs/librdkafka*.so*", ".dylibs/librdkafka*.dylib"):
        found = sorted(glob.glob(str(package / pattern)))
        if found:
            return found[0]
    return None


@functools.cache
def _native() -> tuple[ModuleType | None, str]:
    """The bound C module and librdkafka's version, or None and why not."""
    try:
        from lakehouse.kafka import _rdkafka_columns  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, f"the C module was not built when the package was installed ({exc})"
    try:
        path = librdkafka_path()
    except OSError as exc:
        return None, f"cannot look for librdkafka ({exc})"
    if path is None:
        return None, "confluent-kafka's librdkafka was not found"
    try:
        version = _rdkafka_columns.load(path)
    except ImportError as exc:
        return None, str(exc)
    return _rdkafka_columns, str(version)


def unavailable_reason() -> str | None:
    """None if `ColumnarConsumer` can be used here, else why not."""
    module, detail = _native()
    return None if module is not None else detail


def _librdkafka_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise KafkaReadError(f"Kafka config {name}: {value!r} is not a librdkafka property value")


class ColumnarConsumer:
    """A librdkafka consumer that reads assigned ranges into Arrow columns; one thread at a time.

    Takes the same config as confluent-kafka's `Consumer` (librdkafka properties only: no
    Python callbacks). It starts connecting when made.
    """

    def __init__(self, config: Mapping[str, object]) -> None:
        module, detail = _native()
        if module is None:
            raise KafkaReadError(f"the columnar Kafka reader is not available: {detail}")
        items = [(str(k), _librdkafka_value(str(k), v)) for k, v in config.items()]
        try:
            self._consumer: Any = module.Consumer(items)
        except ValueError as exc:
            raise KafkaReadError(str(exc)) from exc

    def prepare(self, topic: str, timeout_s: float = 10.0) -> bool:
        """Connect and fetch `topic`'s metadata now (blocking; call while planning): reading
        an assignment of a topic librdkafka knows nothing of waits for its next periodic
        metadata refresh, up to a second. False if the metadata did not arrive in time."""
        return bool(self._consumer.prepare(topic, timeout_s))

    def read_batches(
        self,
        topic: str,
        ranges: Sequence[PartitionRange],
        *,
        max_records: int,
        max_bytes: int,
        edge_max_records: int | None = None,
        idle_timeout_s: float = 5.0,
        stop: Callable[[], bool] = lambda: False,
    ) -> Generator[RawBatch, None, None]:
        """Yield batches covering `ranges`, as `lakehouse.kafka.reader.read_batches` does, but
        with exact limits: a batch holds at most `max_bytes` of keys and values (or a single
        larger message); what does not fit starts the next batch.

        `stop()` is checked before each batch is read (a batch takes a fraction of a second);
        `stop_reading()` ends one being read from another thread.
        """
        consumer = self._consumer
        try:
            consumer.assign(topic, [(r.partition, r.start, r.end) for r in ranges])
        except RuntimeError as exc:
            raise KafkaReadError(str(exc)) from exc
        try:
            edge = min(max_records, edge_max_records or max_records)
            limit = edge
            while not stop():
                open_partitions = consumer.open_partitions()
                if not open_partitions:
                    break
                before = consumer.positions()
                left = sum(r.end - before[r.partition] for r in ranges if r.partition in before)
                limit = batch_limit(left, limit, edge)
                try:
                    read = consumer.read(limit, max_bytes, idle_timeout_s, CHUNK_MESSAGES)
                except RuntimeError as exc:
                    raise KafkaReadError(str(exc)) from exc
                limit = max_records
                if stop():
                    break
                after = consumer.positions()
                batch = _raw_batch(topic, read)
                batch.start_offsets = {p: before[p] for p in open_partitions}
                batch.next_offsets = {p: after[p] for p in open_partitions}
                if batch.next_offsets == batch.start_offsets:
                    break  # no progress: the rest is not readable now (e.g. an open transaction)
                yield batch
        finally:
            consumer.unassign()

    def stop_reading(self) -> None:
        """End a `read_batches` in progress on another thread at its next consume boundary
        (within half a second), with what it has read."""
        self._consumer.stop()

    def close(self) -> None:
        """Leave the group's session and free librdkafka's resources (idempotent)."""
        self._consumer.close()

    def __enter__(self) -> "ColumnarConsumer":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _raw_batch(topic: str, read: tuple[Any, ...]) -> RawBatch:
    """A `RawBatch` over the C module's buffers (wrapped, not copied)."""
    rows, nbytes, partitions, offsets, timestamps, keys, values = read

    def fixed(kind: pa.DataType, data: Any) -> pa.Array:
        return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(data)])

    def binary(column: tuple[Any, Any, Any, int]) -> pa.Array:
        validity, ends, data, nulls = column
        buffers = [None if validity is None else pa.py_buffer(validity)]
        buffers += [pa.py_buffer(ends), pa.py_buffer(data)]
        return pa.Array.from_buffers(pa.large_binary(), rows, buffers, null_count=nulls)

    return RawBatch(
        topic,
        fixed(pa.int32(), partitions),
        fixed(pa.int64(), offsets),
        fixed(pa.int64(), timestamps),
        binary(keys),
        binary(values),
        nbytes=nbytes,
    )
