"""The demo's schema change under load: clicks v1 and v2 (`user_location` added) producers
write the same topic at the same time while bronze ingests. No run stops, every event lands
once with exactly the values produced, v1 rows null in the new column."""

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from lakehouse.demo.generators import generator
from lakehouse.demo.streams import demo_schema
from lakehouse.kafka.admin import ensure_topic
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import assert_exactly_once, fresh_spec, ingest_once
from tests.integration.schema_helpers import by_id, table_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 600  # per producer


def produce_version(
    settings: Settings,
    topic: str,
    version: int,
    barrier: threading.Barrier,
    resume: threading.Event,
) -> list[dict[str, Any]]:
    """EVENTS clicks of one schema version with confluent-kafka's AvroSerializer; halfway
    through it waits at `barrier` until `resume` is set (a bronze run happens in between)."""
    client = SchemaRegistryClient(settings.registry_client_config())
    serialize = AvroSerializer(client, demo_schema("clicks", version).text)
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer(settings.kafka_client_config(acks="all"))  # type: ignore[arg-type]
    events = generator(
        "clicks", seed=version, v2_after=0 if version == 2 else None, start=datetime(2026, 5, 1)
    ).take(EVENTS)
    barrier.wait()  # both producers start together
    for i, event in enumerate(events):
        if i == EVENTS // 2:
            assert producer.flush(60) == 0
            barrier.wait()
            resume.wait(120)
        producer.produce(topic, serialize(event.value, context), event.key.encode())
        if i % 50 == 0:
            producer.flush(30)  # small bursts: the two versions interleave in every partition
    assert producer.flush(60) == 0
    return [e.value for e in events]


def test_v1_and_v2_producers_at_the_same_time(stack: Settings) -> None:
    spec = fresh_spec(batch={"max_records": 200})
    ensure_topic(stack, spec.topic, partitions=3)
    barrier, resume = threading.Barrier(3), threading.Event()
    produced: dict[int, list[dict[str, Any]]] = {}
    failures: list[BaseException] = []

    def run(version: int) -> None:
        try:
            produced[version] = produce_version(stack, spec.topic, version, barrier, resume)
        except BaseException as exc:
            failures.append(exc)
            barrier.abort()

    producers = [threading.Thread(target=run, args=(v,)) for v in (1, 2)]
    for thread in producers:
        thread.start()
    reports = []
    try:
        barrier.wait()  # both start
        barrier.wait()  # both halfway: half of each version is in the topic
        reports.append(ingest_once(stack, spec))  # creates the table, applies v2
        resume.set()
    except threading.BrokenBarrierError:
        for thread in producers:
            thread.join()
        raise AssertionError(f"a producer failed: {failures!r}") from None
    while any(t.is_alive() for t in producers):  # ingest while both write
        reports.append(ingest_once(stack, spec))
    for thread in producers:
        thread.join()
    assert not failures, failures
    reports.append(ingest_once(stack, spec))  # whatever came after the last run
    assert all(r.dead_letters == 0 for r in reports)
    assert reports[0].records_written == EVENTS  # half of each version, in one run

    values = {v["event_id"]: v for version in (1, 2) for v in produced[version]}
    assert_exactly_once(stack, spec, set(values))
    rows = by_id(table_rows(stack, spec.table))
    v1_ids = {v["event_id"] for v in produced[1]}
    for event_id, row in rows.items():
        expected = {**values[event_id], "event_time": values[event_id]["event_time"]}
        if event_id in v1_ids:
            expected["user_location"] = None  # old rows: null in the new column
        if expected["event_time"].tzinfo is None:
            expected["event_time"] = expected["event_time"].replace(tzinfo=UTC)
        assert row == expected, event_id
    assert any(rows[v["event_id"]]["user_location"] for v in produced[2])
