"""Malformed frames are malformed in exactly the advertised way, and deterministic."""

import io
import itertools
import json
from datetime import UTC, datetime

import avro.io
import avro.schema
import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from lakehouse.demo import malformed
from lakehouse.demo.framing import confluent_serializer
from lakehouse.demo.generators import generator
from lakehouse.demo.malformed import DEAD_LETTER_KIND, HEADER_SIZE, MalformedKind
from lakehouse.demo.streams import STREAMS, demo_schema

Kind = MalformedKind
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def registry() -> SchemaRegistryClient:
    return SchemaRegistryClient.new_client({"url": "mock://malformed"})


def samples(registry: SchemaRegistryClient, stream: str, n: int = 40):
    schema = demo_schema(stream)
    serialize = confluent_serializer(registry, schema, stream)
    for event in itertools.islice(generator(stream, seed=4, start=START), n):
        yield event, serialize(event.value), schema.parsed


def deserialize(registry: SchemaRegistryClient, stream: str, value: bytes):
    context = SerializationContext(stream, MessageField.VALUE)
    return AvroDeserializer(registry)(value, context)


@pytest.mark.parametrize("stream", STREAMS)
def test_good_frames_decode(registry, stream: str) -> None:
    for event, good, _ in samples(registry, stream, 5):
        assert good[0] == 0
        assert deserialize(registry, stream, good) == event.value


@pytest.mark.parametrize("stream", STREAMS)
def test_bad_magic(registry, stream: str) -> None:
    for n, (event, good, schema) in enumerate(samples(registry, stream)):
        bad = malformed.make(Kind.BAD_MAGIC, good, event.value, schema, n)
        assert bad[0] != 0 and bad[1:] == good[1:]
        with pytest.raises(SerializationError, match="magic byte"):
            deserialize(registry, stream, bad)


@pytest.mark.parametrize("stream", STREAMS)
def test_unknown_schema_id(registry, stream: str) -> None:
    for n, (event, good, schema) in enumerate(samples(registry, stream)):
        bad = malformed.make(Kind.UNKNOWN_SCHEMA_ID, good, event.value, schema, n)
        assert bad[0] == 0 and bad[HEADER_SIZE:] == good[HEADER_SIZE:]
        unknown = malformed.schema_id_of(bad)
        assert unknown != malformed.schema_id_of(good)
        with pytest.raises(SchemaRegistryError):
            registry.get_schema(unknown)
        with pytest.raises(SchemaRegistryError):
            deserialize(registry, stream, bad)


@pytest.mark.parametrize("stream", STREAMS)
def test_truncated(registry, stream: str) -> None:
    for n, (event, good, schema) in enumerate(samples(registry, stream)):
        bad = malformed.make(Kind.TRUNCATED, good, event.value, schema, n)
        assert HEADER_SIZE < len(bad) < len(good)  # not a short frame
        assert good.startswith(bad)
        # fastavro raises EOFError or IndexError depending on where the cut falls, and
        # confluent's deserializer lets them through unwrapped.
        with pytest.raises((EOFError, IndexError)):
            fastavro.schemaless_reader(io.BytesIO(bad[HEADER_SIZE:]), schema)
        with pytest.raises((SerializationError, EOFError, IndexError)):
            deserialize(registry, stream, bad)
        reader = avro.io.DatumReader(avro.schema.parse(demo_schema(stream).text))
        with pytest.raises(Exception):  # noqa: B017 - the Apache reader's error types vary
            reader.read(avro.io.BinaryDecoder(io.BytesIO(bad[HEADER_SIZE:])))


@pytest.mark.parametrize("stream", STREAMS)
def test_not_avro(registry, stream: str) -> None:
    for n, (event, good, schema) in enumerate(samples(registry, stream, 5)):
        bad = malformed.make(Kind.NOT_AVRO, good, event.value, schema, n)
        assert bad[0] != 0
        assert json.loads(bad)["event_id"] == event.event_id
        with pytest.raises(SerializationError):
            deserialize(registry, stream, bad)


@pytest.mark.parametrize("kind", list(Kind))
def test_each_kind_is_deterministic(registry, kind: Kind) -> None:
    made = [
        [
            malformed.make(kind, good, e.value, s, n)
            for n, (e, good, s) in enumerate(samples(registry, "clicks", 10))
        ]
        for _ in range(2)
    ]
    assert made[0] == made[1]


def test_dead_letter_kinds_are_the_contracts() -> None:
    contract = {
        "bad-magic-byte",
        "short-frame",
        "unknown-schema-id",
        "corrupt-datum",
        "trailing-bytes",
        "oversize",
        "empty-value",
    }
    assert set(DEAD_LETTER_KIND) == set(Kind)
    assert set(DEAD_LETTER_KIND.values()) <= contract
