"""Value serializers for the demo streams: confluent-kafka's `AvroSerializer` (the default)
and a fast path that frames fastavro output the same way, byte for byte.

Both register the schema under the topic's subject (`<topic>-value`); registry failures are
re-raised as `RegistryError` / `RegistryUnavailableError`.
"""

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import fastavro
import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from lakehouse.demo.malformed import frame
from lakehouse.demo.streams import DemoSchema
from lakehouse.errors import RegistryError, RegistryUnavailableError

try:  # confluent-kafka talks through httpx2 when it is installed, else httpx
    import httpx2

    _TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx2.HTTPError)
except ImportError:  # pragma: no cover
    _TRANSPORT_ERRORS = (httpx.HTTPError,)

ValueSerializer = Callable[[dict[str, Any]], bytes]

SERIALIZER_CONF = {"auto.register.schemas": True, "subject.name.strategy.type": "TOPIC"}


def subject(topic: str) -> str:
    """The value subject of a topic (TopicNameStrategy)."""
    return f"{topic}-value"


def confluent_serializer(
    client: SchemaRegistryClient, schema: DemoSchema, topic: str
) -> ValueSerializer:
    """confluent-kafka's AvroSerializer for `schema` on `topic` (auto-registers)."""
    serializer = AvroSerializer(client, schema.text, conf=dict(SERIALIZER_CONF))
    context = SerializationContext(topic, MessageField.VALUE)

    def serialize(value: dict[str, Any]) -> bytes:
        with registry_errors(topic):
            data = serializer(value, context)
        assert data is not None
        return data

    return serialize


def fast_serializer(
    client: SchemaRegistryClient, schema: DemoSchema, topic: str
) -> ValueSerializer:
    """Registers `schema` once, then frames `fastavro.schemaless_writer` output itself."""
    schema_id = register(client, schema, topic)
    parsed = schema.parsed
    header = frame(schema_id, b"")
    buffer = io.BytesIO()
    write = fastavro.schemaless_writer

    def serialize(value: dict[str, Any]) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        buffer.write(header)
        write(buffer, parsed, value)
        return buffer.getvalue()

    return serialize


def register(client: SchemaRegistryClient, schema: DemoSchema, topic: str) -> int:
    """Register `schema` under the topic's subject (idempotent) and return its id."""
    with registry_errors(topic):
        return int(client.register_schema(subject(topic), Schema(schema.text, "AVRO")))


@contextmanager
def registry_errors(topic: str) -> Iterator[None]:
    """Re-raise registry failures as the project's errors (5xx, timeouts: unavailable)."""
    try:
        yield
    except SchemaRegistryError as exc:
        status = exc.http_status_code
        where = f"schema registry, subject {subject(topic)!r}"
        if status >= 500 or status < 0:
            raise RegistryUnavailableError(f"{where}: {exc}") from exc
        raise RegistryError(f"{where}: {exc}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise RegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
