"""The local Apicurio registry behaves like Confluent for confluent-kafka's own client."""

import json
import uuid

import httpx
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from lakehouse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def avro(fields: list[dict[str, object]], name: str = "Click") -> Schema:
    record = {"type": "record", "name": name, "namespace": "test.stack", "fields": fields}
    return Schema(json.dumps(record), "AVRO")


V1 = [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}]
V2 = [*V1, {"name": "tag", "type": ["null", "string"], "default": None}]
INCOMPATIBLE = [{"name": "id", "type": "int"}, {"name": "n", "type": "long"}]


@pytest.fixture
def client(stack: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient(stack.registry_client_config())


@pytest.fixture
def subject() -> str:
    return f"stack-{uuid.uuid4().hex[:8]}-value"


def test_default_compatibility_is_backward(stack: Settings) -> None:
    response = httpx.get(f"{stack.schema_registry_url}/config", timeout=10)
    assert response.json()["compatibilityLevel"] == "BACKWARD"


def test_register_evolve_and_reject(client: SchemaRegistryClient, subject: str) -> None:
    v1 = client.register_schema(subject, avro(V1))
    assert client.register_schema(subject, avro(V1)) == v1

    assert client.test_compatibility(subject, avro(V2)) is True
    assert client.test_compatibility(subject, avro(INCOMPATIBLE)) is False

    v2 = client.register_schema(subject, avro(V2))
    assert v2 != v1
    with pytest.raises(SchemaRegistryError) as incompatible:
        client.register_schema(subject, avro(INCOMPATIBLE))
    assert incompatible.value.http_status_code == 409

    assert json.loads(client.get_schema(v1).schema_str) == json.loads(avro(V1).schema_str)
    assert client.lookup_schema(subject, avro(V2)).schema_id == v2
    assert client.get_versions(subject) == [1, 2]
    assert client.get_latest_version(subject).schema_id == v2


def test_unknown_id_is_40403(client: SchemaRegistryClient) -> None:
    with pytest.raises(SchemaRegistryError) as unknown:
        client.get_schema(987_654_321)
    assert (unknown.value.http_status_code, unknown.value.error_code) == (404, 40403)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}',
        '{"type": "record", "name": "X", "fields": [',
    ],
)
def test_invalid_schema_is_42201_with_message(
    client: SchemaRegistryClient, subject: str, text: str
) -> None:
    with pytest.raises(SchemaRegistryError) as invalid:
        client.register_schema(subject, Schema(text, "AVRO"))
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42201)
    assert invalid.value.error_message


def test_serializer_probe_gets_404(stack: Settings) -> None:
    """confluent-kafka's serializer asks for associations first and accepts only 404."""
    url = f"{stack.schema_registry_url}/associations/resources/-/some-topic"
    assert httpx.get(url, timeout=10).status_code == 404


def test_avro_serializer_broker_deserializer_round_trip(
    stack: Settings, client: SchemaRegistryClient
) -> None:
    topic = f"avro-{uuid.uuid4().hex[:8]}"
    serializer = AvroSerializer(client, avro(V1).schema_str)
    deserializer = AvroDeserializer(client)
    records = [{"id": f"e{i}", "n": i * 1_000_000_007} for i in range(50)]

    producer = Producer(stack.kafka_client_config())  # type: ignore[arg-type]
    for record in records:
        ctx = SerializationContext(topic, MessageField.VALUE)
        producer.produce(topic, value=serializer(record, ctx))
    assert producer.flush(30) == 0

    consumer = Consumer(
        stack.kafka_client_config(  # type: ignore[arg-type]
            **{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    got: list[dict[str, object]] = []
    try:
        while len(got) < len(records):
            message = consumer.poll(30)
            assert message is not None, f"timed out after {len(got)} messages"
            assert message.error() is None, message.error()
            ctx = SerializationContext(topic, MessageField.VALUE)
            got.append(deserializer(message.value(), ctx))
    finally:
        consumer.close()
    assert got == records
    schema_id = int.from_bytes(message.value()[1:5], "big")
    assert client.get_schema(schema_id).schema_str
