"""Kafka round trip through the real local broker."""

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from lakehouse.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_produce_and_consume_exact_values_across_partitions(stack: Settings) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(stack.kafka_client_config())  # type: ignore[arg-type]
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)

    sent = {f"key-{i}".encode(): f"value-{i}-é".encode() for i in range(300)}
    producer = Producer(stack.kafka_client_config(**{"acks": "all", "linger.ms": 5}))  # type: ignore[arg-type]
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(
        stack.kafka_client_config(  # type: ignore[arg-type]
            **{"group.id": f"g-{topic}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    received: dict[bytes, bytes] = {}
    partitions: set[int] = set()
    try:
        for _ in range(300):
            for message in consumer.consume(num_messages=500, timeout=1):
                assert message.error() is None, message.error()
                received[message.key()] = message.value()
                partitions.add(message.partition())
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent
    assert partitions == {0, 1, 2}
