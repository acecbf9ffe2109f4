"""Helpers for the schema-evolution tests: produce with confluent-kafka's own AvroSerializer
under any schema, set a subject's compatibility, read tables back through a fresh catalog."""

import json
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from lakehouse.iceberg.catalog import load_catalog
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS
from lakehouse.settings import Settings

#: An event id and an event time (micros): the fields every test record starts with.
BASE_FIELDS: list[dict[str, Any]] = [
    {"name": "event_id", "type": "string"},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
]


def record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "lakehouse.test", "fields": fields}


def set_compatibility(settings: Settings, subject: str, level: str) -> None:
    SchemaRegistryClient(settings.registry_client_config()).set_compatibility(subject, level)


def produce_avro(
    settings: Settings,
    topic: str,
    messages: Iterable[tuple[dict[str, Any], dict[str, Any]]],
    *,
    partition: int | None = 0,
) -> list[int]:
    """Produce (schema, value) pairs in order (auto-registering each schema under
    `<topic>-value`), wait for every delivery; the schema ids used, in order."""
    client = SchemaRegistryClient(settings.registry_client_config())
    context = SerializationContext(topic, MessageField.VALUE)
    serializers: dict[str, AvroSerializer] = {}
    producer = Producer(settings.kafka_client_config(acks="all"))  # type: ignore[arg-type]
    ids = []
    for schema, value in messages:
        text = json.dumps(schema)
        if text not in serializers:
            serializers[text] = AvroSerializer(client, text, conf={"auto.register.schemas": True})
        data = serializers[text](value, context)
        assert data is not None
        ids.append(int.from_bytes(data[1:5], "big"))
        if partition is None:
            producer.produce(topic, data)
        else:
            producer.produce(topic, data, partition=partition)
    assert producer.flush(60) == 0
    return ids


def table_rows(
    settings: Settings, identifier: str, snapshot_id: int | None = None
) -> list[dict[str, Any]]:
    """Every row of the table without the Kafka columns, through a fresh catalog object."""
    table = load_catalog(settings).load_table(identifier)
    rows = table.scan(snapshot_id=snapshot_id).to_arrow().to_pylist()
    return [{k: v for k, v in row.items() if k not in KAFKA_COLUMNS} for row in rows]


def by_id(rows: list[dict[str, Any]], key: str = "event_id") -> dict[str, dict[str, Any]]:
    """Rows keyed by their event id (asserting none is there twice)."""
    keyed = {row[key]: row for row in rows}
    assert len(keyed) == len(rows), "an event is in the table twice"
    return keyed
