"""The fast framing path writes the same bytes as confluent-kafka's AvroSerializer."""

import itertools
import socket

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from lakehouse.demo import malformed
from lakehouse.demo.framing import confluent_serializer, fast_serializer, register, subject
from lakehouse.demo.generators import generator
from lakehouse.demo.streams import STREAMS, demo_schema
from lakehouse.errors import RegistryUnavailableError


@pytest.mark.parametrize("stream", STREAMS)
def test_fast_path_is_byte_identical(stream: str) -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://framing"})
    versions = 2 if stream == "clicks" else 1
    for version in range(1, versions + 1):
        schema = demo_schema(stream, version)
        slow = confluent_serializer(registry, schema, stream)
        fast = fast_serializer(registry, schema, stream)
        events = generator(stream, seed=9, v2_after=0 if version == 2 else None)
        for event in itertools.islice(events, 1_000):
            assert slow(event.value) == fast(event.value)


def test_register_is_idempotent_and_uses_topic_subject() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://framing-ids"})
    first = register(registry, demo_schema("clicks", 1), "clicks-x")
    assert register(registry, demo_schema("clicks", 1), "clicks-x") == first
    second = register(registry, demo_schema("clicks", 2), "clicks-x")
    assert second != first
    assert registry.get_subjects() == [subject("clicks-x")]
    value = next(iter(generator("clicks", seed=1))).value
    framed = confluent_serializer(registry, demo_schema("clicks", 1), "clicks-x")(value)
    assert malformed.schema_id_of(framed) == first


def test_unreachable_registry_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        config = {"url": f"http://127.0.0.1:{port}", "timeout": 1, "max.retries": 0}
        registry = SchemaRegistryClient(config)
        with pytest.raises(RegistryUnavailableError):
            register(registry, demo_schema("readings"), "readings")
