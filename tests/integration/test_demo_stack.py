"""Demo producer against the real broker and registry: exact values back through confluent's
AvroDeserializer, clicks v1/v2 under one subject, and reports that match what is read."""

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from lakehouse.demo import malformed
from lakehouse.demo.framing import (
    confluent_serializer,
    fast_serializer,
    register,
    registry_errors,
    subject,
)
from lakehouse.demo.generators import generator
from lakehouse.demo.malformed import MALFORMED_HEADER, MalformedKind
from lakehouse.demo.producer import produce, produce_many
from lakehouse.demo.streams import STREAMS, demo_schema
from lakehouse.errors import RegistryError
from lakehouse.kafka.admin import earliest_offsets, end_offsets, ensure_topic, list_topics
from lakehouse.settings import Settings

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def read_all(settings: Settings, topic: str) -> list[Message]:
    """Every message of `topic`, from the low to the high watermark of each partition."""
    ends = end_offsets(settings, topic)
    starts = earliest_offsets(settings, topic)
    wanted = sum(ends[p] - starts[p] for p in ends)
    consumer = Consumer(
        settings.kafka_client_config(**{"group.id": fresh("test"), "enable.auto.commit": False})
    )
    consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
    messages: list[Message] = []
    try:
        idle = 0
        while len(messages) < wanted and idle < 20:
            batch = consumer.consume(10_000, timeout=0.5)
            idle = 0 if batch else idle + 1
            for message in batch:
                assert message.error() is None, message.error()
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) == wanted
    return messages


def decode(settings: Settings, messages: list[Message], reader: str | None = None) -> list[Any]:
    registry = SchemaRegistryClient(settings.registry_client_config())
    deserializer = AvroDeserializer(registry, reader)
    return [
        deserializer(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
        for m in messages
    ]


def malformed_kind(message: Message) -> str | None:
    return dict(message.headers() or []).get(MALFORMED_HEADER, b"").decode() or None


def test_admin_topics_and_watermarks(stack: Settings) -> None:
    topic = fresh("admin")
    assert ensure_topic(stack, topic) is True
    assert ensure_topic(stack, topic) is False  # idempotent
    assert topic in list_topics(stack)
    assert end_offsets(stack, topic) == dict.fromkeys(range(6), 0)
    assert earliest_offsets(stack, topic) == dict.fromkeys(range(6), 0)
    report = produce(stack, "readings", count=300, seed=1, progress=False, topic=topic)
    ends = end_offsets(stack, topic)
    assert sum(ends.values()) == report.produced == 300
    assert sum(1 for offset in ends.values() if offset) > 1  # keys spread over partitions


@pytest.mark.parametrize("stream", STREAMS)
def test_exact_round_trip(stack: Settings, stream: str) -> None:
    topic = fresh(stream)
    report = produce(
        stack,
        stream,
        count=500,
        seed=21,
        start=START,
        late_fraction=0.1,
        progress=False,
        topic=topic,
        collect_ids=True,
    )
    assert report.ok and report.delivered == 500 and report.late > 0
    expected = {
        e.event_id: e for e in generator(stream, 21, start=START, late_fraction=0.1).take(500)
    }
    messages = read_all(stack, topic)
    values = decode(stack, messages)
    assert {v["event_id"]: v for v in values} == {i: e.value for i, e in expected.items()}
    for message, value in zip(messages, values, strict=True):
        assert message.key() == expected[value["event_id"]].key.encode()
    assert report.ids == {i: e.key for i, e in expected.items()}


def test_clicks_v1_and_v2_under_one_subject(stack: Settings) -> None:
    topic = fresh("clicks")
    registry = SchemaRegistryClient(stack.registry_client_config())
    register(registry, demo_schema("clicks", 1), topic)
    registry.set_compatibility(subject(topic), "BACKWARD")
    report = produce(
        stack,
        "clicks",
        count=400,
        v2_after=150,
        seed=3,
        start=START,
        progress=False,
        topic=topic,
    )
    assert report.ok and report.v2 == 250 and set(report.schema_ids) == {1, 2}
    assert report.schema_ids[1] != report.schema_ids[2]
    assert registry.get_versions(subject(topic)) == [1, 2]
    expected = {
        e.event_id: e.value for e in generator("clicks", 3, v2_after=150, start=START).take(400)
    }
    messages = read_all(stack, topic)
    as_written = decode(stack, messages)
    assert {v["event_id"]: v for v in as_written} == expected
    ids = Counter(malformed.schema_id_of(m.value()) for m in messages)
    assert ids == {report.schema_ids[1]: 150, report.schema_ids[2]: 250}
    as_v2 = decode(stack, messages, demo_schema("clicks", 2).text)
    assert {v["event_id"]: v for v in as_v2} == {
        i: {"user_location": None, **v} for i, v in expected.items()
    }


def test_incompatible_schema_is_refused(stack: Settings) -> None:
    topic = fresh("clicks")
    registry = SchemaRegistryClient(stack.registry_client_config())
    register(registry, demo_schema("clicks", 1), topic)
    registry.set_compatibility(subject(topic), "BACKWARD")
    required = json.loads(demo_schema("clicks", 1).text)
    required["fields"].append({"name": "user_location", "type": "string"})  # no default
    with pytest.raises(RegistryError), registry_errors(topic):
        registry.register_schema(subject(topic), Schema(json.dumps(required), "AVRO"))
    assert registry.get_versions(subject(topic)) == [1]


def test_report_matches_what_is_read(stack: Settings) -> None:
    topic = fresh("payments")
    report = produce(
        stack,
        "payments",
        count=2_000,
        malformed_fraction=0.1,
        seed=5,
        progress=False,
        topic=topic,
        collect_ids=True,
    )
    assert report.ok and report.produced == 2_000
    assert report.delivered + sum(report.malformed.values()) == 2_000
    assert set(report.malformed) == {k.value for k in MalformedKind}
    messages = read_all(stack, topic)
    assert sum(end_offsets(stack, topic).values()) == 2_000
    good = [m for m in messages if malformed_kind(m) is None]
    bad = Counter(malformed_kind(m) for m in messages if malformed_kind(m) is not None)
    assert bad == report.malformed
    values = decode(stack, good)
    assert {
        v["event_id"]: m.key().decode() for v, m in zip(values, good, strict=True)
    } == report.ids
    registry = SchemaRegistryClient(stack.registry_client_config())
    deserializer = AvroDeserializer(registry)
    issued = set(report.schema_ids.values())
    for message in messages:
        value, kind = message.value(), malformed_kind(message)
        if kind == MalformedKind.BAD_MAGIC:
            assert value[0] not in (0, 1)
        elif kind == MalformedKind.NOT_AVRO:
            assert value.startswith(b"{")
        elif kind == MalformedKind.TRUNCATED:
            assert value[0] == 0 and malformed.schema_id_of(value) in issued and len(value) > 5
            with pytest.raises(Exception):  # noqa: B017 - EOFError or IndexError from fastavro
                deserializer(value, SerializationContext(topic, MessageField.VALUE))
        elif kind == MalformedKind.UNKNOWN_SCHEMA_ID:
            with pytest.raises(SchemaRegistryError) as info:
                registry.get_schema(malformed.schema_id_of(value))
            assert info.value.http_status_code == 404


@pytest.mark.parametrize("stream", STREAMS)
def test_fast_path_matches_avro_serializer_on_real_registry(stack: Settings, stream: str) -> None:
    topic = fresh(stream)
    registry = SchemaRegistryClient(stack.registry_client_config())
    slow = confluent_serializer(registry, demo_schema(stream), topic)
    fast = fast_serializer(registry, demo_schema(stream), topic)
    for event in generator(stream, 2, start=START).take(500):
        assert slow(event.value) == fast(event.value)
    report = produce(
        stack,
        stream,
        count=300,
        seed=2,
        start=START,
        fast=True,
        topic=topic,
        progress=False,
        collect_ids=True,
    )
    values = decode(stack, read_all(stack, topic))
    assert {v["event_id"] for v in values} == set(report.ids)


def test_all_streams_at_once_and_stop(stack: Settings) -> None:
    reports = produce_many(stack, list(STREAMS), seed=8, count=200, progress=False)
    assert [r.delivered for r in reports.values()] == [200, 200, 200]
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    report = produce(
        stack, "clicks", rate=500, seed=1, topic=fresh("clicks"), progress=False, stop=stop
    )
    assert report.interrupted and report.ok
    assert report.produced == report.delivered > 0


def test_cli_produces_and_reports(stack: Settings) -> None:
    from typer.testing import CliRunner

    from lakehouse.demo.commands import demo_app

    env = {
        "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap_servers,
        "LAKEHOUSE_SCHEMA_REGISTRY_URL": stack.schema_registry_url,
    }
    before = sum(end_offsets(stack, "readings").values()) if "readings" in list_topics(stack) else 0
    args = ["produce", "readings", "--count", "120", "--malformed-fraction", "0.1", "--seed", "4"]
    result = CliRunner().invoke(demo_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    assert sum(end_offsets(stack, "readings").values()) == before + 120
