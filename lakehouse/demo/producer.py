"""Produce demo events to Kafka: Confluent-framed Avro values, string keys, every delivery
report waited for and counted (see `ProduceReport`)."""

import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lakehouse.demo import malformed
from lakehouse.demo.framing import ValueSerializer, confluent_serializer, fast_serializer
from lakehouse.demo.generators import Event, generator
from lakehouse.demo.report import ProduceReport
from lakehouse.demo.streams import demo_schema
from lakehouse.kafka.admin import ensure_topic
from lakehouse.settings import Settings

PRODUCER_CONFIG: dict[str, str | int | bool] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 20,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    "delivery.timeout.ms": 120_000,
}
FLUSH_TIMEOUT = 150.0  # longer than delivery.timeout.ms: every message gets its report
_KINDS = tuple(malformed.MalformedKind)


def produce(
    settings: Settings,
    stream: str,
    count: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
    late_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
    v2_after: int | None = None,
    seed: int | None = None,
    progress: bool = True,
    *,
    topic: str | None = None,
    fast: bool = False,
    collect_ids: bool = False,
    partitions: int = 6,
    stop: threading.Event | None = None,
    start: datetime | None = None,
) -> ProduceReport:
    """Produce `count` messages (or for `duration` seconds, or until `stop`/Ctrl-C) of a
    demo stream to `topic` (default: the stream's name), at most `rate` per second.

    Each message is malformed with probability `malformed_fraction` (the four kinds in
    turn). Waits for every delivery report before returning. `fast` frames fastavro output
    itself instead of calling confluent-kafka's AvroSerializer (same bytes, faster).
    `start` fixes the generator's clock (see `EventGenerator`) for reproducible values.
    """
    options = _Options(
        count, duration, rate, late_fraction, malformed_fraction, v2_after, start,
        fast, collect_ids, partitions,
    )  # fmt: skip
    run = _Run(settings, stream, topic or stream, options, seed)
    if not progress:
        return run.execute(stop or threading.Event(), None)
    with _progress() as bar:
        return run.execute(stop or threading.Event(), bar)


def produce_many(
    settings: Settings,
    streams: Sequence[str],
    seed: int | None = None,
    progress: bool = True,
    stop: threading.Event | None = None,
    **options: Any,
) -> dict[str, ProduceReport]:
    """Produce several streams at once, one thread each (the keyword options of `produce`,
    except `topic`: each stream goes to the topic of its name).

    Each stream gets its own seed derived from `seed`. Ctrl-C stops all of them; they
    flush and report.
    """
    stop = stop or threading.Event()
    base = secrets.randbits(63) if seed is None else seed
    shared = _Options(**options)
    runs = {
        name: _Run(
            settings,
            name,
            name,
            shared if name == "clicks" else replace(shared, v2_after=None),
            random.Random(f"{base}:{name}").getrandbits(63),
        )
        for name in streams
    }
    reports: dict[str, ProduceReport] = {}
    failures: list[BaseException] = []

    def work(name: str, bar: Progress | None) -> None:
        try:
            reports[name] = runs[name].execute(stop, bar)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    def run_all(bar: Progress | None) -> None:
        threads = [threading.Thread(target=work, args=(n, bar), name=n) for n in runs]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            for thread in threads:
                thread.join()

    if progress:
        with _progress() as bar:
            run_all(bar)
    else:
        run_all(None)
    if failures:
        raise failures[0]
    return {name: reports[name] for name in streams}


@dataclass(frozen=True)
class _Options:
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    late_fraction: float = 0.0
    malformed_fraction: float = 0.0
    v2_after: int | None = None
    start: datetime | None = None
    fast: bool = False
    collect_ids: bool = False
    partitions: int = 6

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 0:
            raise ValueError("count must be >= 0")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be > 0")
        if not 0.0 <= self.malformed_fraction <= 1.0:
            raise ValueError("malformed_fraction must be between 0 and 1")


class _Run:
    """One stream's run: generate, serialize, produce, count delivery reports."""

    def __init__(
        self,
        settings: Settings,
        stream: str,
        topic: str,
        options: _Options,
        seed: int | None,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.options = options
        seed = secrets.randbits(63) if seed is None else seed
        self.events = generator(
            stream,
            seed,
            late_fraction=options.late_fraction,
            v2_after=options.v2_after,
            start=options.start,
        )
        self.chance = random.Random(f"{seed}:malformed")
        self.report = ProduceReport(stream, topic, seed)
        self.serializers: dict[int, ValueSerializer] = {}
        self.malformed_made = 0
        self.client: SchemaRegistryClient | None = None

    def execute(self, stop: threading.Event, bar: Progress | None) -> ProduceReport:
        """Produce until done, then flush and return the report."""
        ensure_topic(self.settings, self.topic, partitions=self.options.partitions)
        self.client = SchemaRegistryClient(self.settings.registry_client_config())
        config = self.settings.kafka_client_config(**PRODUCER_CONFIG)
        producer = Producer(cast(dict[str, Any], config))
        task = None
        if bar is not None:
            task = bar.add_task(self.report.stream, total=self.options.count, rate="")
        started = time.monotonic()
        try:
            self._loop(producer, stop, started, lambda: self._show(bar, task, started))
        except KeyboardInterrupt:
            self.report.interrupted = True
        finally:
            self._flush(producer)
            self.report.seconds = time.monotonic() - started
            self._show(bar, task, started)
        return self.report

    def _loop(
        self, producer: Producer, stop: threading.Event, started: float, show: Callable[[], None]
    ) -> None:
        opts = self.options
        deadline = None if opts.duration is None else started + opts.duration
        shown = started
        sent = 0
        while opts.count is None or sent < opts.count:
            now = time.monotonic()
            if stop.is_set():
                self.report.interrupted = True
                return
            if deadline is not None and now >= deadline:
                return
            if opts.rate is not None:
                due = started + sent / opts.rate
                if due > now:
                    producer.poll(min(due - now, 0.1))
                    continue
            self._send(producer, self.events.next(), sent)
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
            if now - shown > 0.25:
                shown = now
                show()

    def _send(self, producer: Producer, event: Event, n: int) -> None:
        good = self._serializer(event.schema_version)(event.value)
        if event.schema_version not in self.report.schema_ids:
            self.report.schema_ids[event.schema_version] = malformed.schema_id_of(good)
        opts = self.options
        if opts.malformed_fraction and self.chance.random() < opts.malformed_fraction:
            kind = _KINDS[self.malformed_made % len(_KINDS)]  # the four kinds in turn
            self.malformed_made += 1
            schema = demo_schema(self.report.stream, event.schema_version).parsed
            value = malformed.make(kind, good, event.value, schema, n)
            headers: list[tuple[str, str | bytes | None]] = [
                (malformed.MALFORMED_HEADER, kind.value.encode())
            ]
            self._produce(
                producer,
                event.key.encode(),
                value,
                headers,
                partial(self._on_malformed, kind.value),
            )
            return
        event_id = event.event_id if self.options.collect_ids else None
        callback = partial(self._on_event, event_id, event.late, event.schema_version)
        self._produce(producer, event.key.encode(), good, None, callback)

    def _produce(
        self,
        producer: Producer,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None,
        callback: Callable[[KafkaError | None, Message], None],
    ) -> None:
        self.report.produced += 1
        while True:
            try:
                producer.produce(self.topic, value, key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                producer.poll(0.05)
            except KafkaException as exc:
                self.report.error(f"produce: {exc}")
                return

    def _serializer(self, version: int) -> ValueSerializer:
        serializer = self.serializers.get(version)
        if serializer is None:
            assert self.client is not None
            make = fast_serializer if self.options.fast else confluent_serializer
            schema = demo_schema(self.report.stream, version)
            serializer = self.serializers[version] = make(self.client, schema, self.topic)
        return serializer

    def _on_event(
        self, event_id: str | None, late: bool, version: int, err: KafkaError | None, msg: Message
    ) -> None:
        if err is not None:
            self.report.error(f"delivery: {err.str()}")
            return
        self.report.delivered += 1
        self.report.late += late
        self.report.v2 += version == 2
        if event_id is not None:
            key = msg.key()
            self.report.ids[event_id] = key.decode() if key is not None else ""

    def _on_malformed(self, kind: str, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.report.error(f"delivery: {err.str()}")
            return
        self.report.malformed[kind] += 1

    def _flush(self, producer: Producer) -> None:
        remaining = producer.flush(FLUSH_TIMEOUT)
        if remaining:
            for _ in range(remaining):
                self.report.error(f"no delivery report within {FLUSH_TIMEOUT:.0f}s")

    def _show(self, bar: Progress | None, task: Any, started: float) -> None:
        if bar is None or task is None:
            return
        done = self.report.delivered + sum(self.report.malformed.values())
        elapsed = max(time.monotonic() - started, 1e-9)
        bar.update(
            task,
            completed=self.report.produced,
            rate=f"{done / elapsed:,.0f} ack/s  failed {self.report.failed}",
        )


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
