"""Topic administration and watermarks through confluent-kafka's AdminClient.

Kafka failures are re-raised as `LakehouseError` with the topic named.
"""

import time
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import (
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec, TopicMetadata

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient for the configured cluster (librdkafka info chatter off: a sensor makes
    one every tick, and each would log "Purging unserved events" when it is dropped)."""
    config = {"log_level": 4, **settings.kafka_client_config()}
    return AdminClient(cast(dict[str, Any], config))


def list_topics(settings: Settings, timeout: float = 10.0, internal: bool = False) -> list[str]:
    """Names of the cluster's topics, sorted; internal (`__*`) topics only if asked."""
    topics = _metadata(admin_client(settings), timeout)
    return sorted(name for name in topics if internal or not name.startswith("__"))


def ensure_topic(
    settings: Settings,
    topic: str,
    partitions: int = 6,
    replication: int = 1,
    timeout: float = 30.0,
) -> bool:
    """Create `topic` unless it exists; wait until every partition has a leader.

    Returns True when this call created it. An existing topic is left as it is (its
    partition count is not changed).
    """
    admin = admin_client(settings)
    created = False
    if topic not in _metadata(admin, timeout):
        future = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication)],
            request_timeout=timeout,
        )[topic]
        try:
            future.result(timeout=timeout)
            created = True
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise LakehouseError(f"cannot create topic {topic!r}: {exc}") from exc
    _wait_ready(admin, topic, timeout)
    return created


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The next offset to be written in each partition (the high watermark).

    Read with `read_committed`, the isolation the consumers use: with transactions this is
    the last stable offset.
    """
    return _offsets(settings, topic, OffsetSpec.latest(), timeout)


def earliest_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The first offset still stored in each partition (the low watermark)."""
    return _offsets(settings, topic, OffsetSpec.earliest(), timeout)


def topic_id(settings: Settings, topic: str, timeout: float = 10.0) -> str:
    """Kafka's id of the topic: a topic deleted and recreated under the same name gets a new one."""
    admin = admin_client(settings)  # keep the handle alive until the future resolves
    futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
    try:
        return str(futures[topic].result().topic_id)
    except KafkaException as exc:
        raise LakehouseError(f"cannot describe topic {topic!r}: {exc}") from exc


@dataclass(frozen=True)
class TopicState:
    """What planning needs from Kafka: the topic's id and its earliest and end offsets."""

    topic_id: str
    earliest: dict[int, int]
    end: dict[int, int]


def topic_state(settings: Settings, topic: str, timeout: float = 10.0) -> TopicState:
    """The topic's id and watermarks, asked all at once on one connection."""
    admin = admin_client(settings)
    described = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    partitions = _partitions(admin, topic, timeout)
    earliest = _list_offsets(admin, topic, partitions, OffsetSpec.earliest(), timeout)
    end = _list_offsets(admin, topic, partitions, OffsetSpec.latest(), timeout)
    try:
        topic_id = str(described.result().topic_id)
    except KafkaException as exc:
        raise LakehouseError(f"cannot describe topic {topic!r}: {exc}") from exc
    return TopicState(topic_id, _resolve(topic, earliest), _resolve(topic, end))


def _offsets(settings: Settings, topic: str, spec: OffsetSpec, timeout: float) -> dict[int, int]:
    admin = admin_client(settings)
    partitions = _partitions(admin, topic, timeout)
    return _resolve(topic, _list_offsets(admin, topic, partitions, spec, timeout))


def _partitions(admin: AdminClient, topic: str, timeout: float) -> list[int]:
    metadata = _metadata(admin, timeout).get(topic)
    if metadata is None:
        raise LakehouseError(f"topic {topic!r} does not exist")
    return list(metadata.partitions)


def _list_offsets(
    admin: AdminClient, topic: str, partitions: list[int], spec: OffsetSpec, timeout: float
) -> dict[TopicPartition, Any]:
    request = {TopicPartition(topic, p): spec for p in partitions}
    return admin.list_offsets(  # type: ignore[no-any-return]
        request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout
    )


def _resolve(topic: str, futures: dict[TopicPartition, Any]) -> dict[int, int]:
    try:
        return {tp.partition: future.result().offset for tp, future in futures.items()}
    except KafkaException as exc:
        raise LakehouseError(f"cannot list offsets of topic {topic!r}: {exc}") from exc


def _metadata(admin: AdminClient, timeout: float) -> dict[str, TopicMetadata]:
    try:
        return dict(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise LakehouseError(f"cannot reach Kafka for metadata: {exc}") from exc


def _wait_ready(admin: AdminClient, topic: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        metadata = _metadata(admin, timeout).get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and metadata.partitions
            and all(p.leader >= 0 and p.error is None for p in metadata.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise LakehouseError(
                f"topic {topic!r} has no leader for every partition after {timeout}s"
            )
        time.sleep(0.1)
