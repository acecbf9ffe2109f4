"""Asset keys, in one place so assets, checks and sensors agree."""

import dagster as dg

from lakehouse.config import StreamSpec


def topic_key(spec: StreamSpec) -> dg.AssetKey:
    """The Kafka topic, an external asset."""
    return dg.AssetKey(["kafka", spec.topic])


def bronze_key(spec: StreamSpec) -> dg.AssetKey:
    """The bronze Iceberg table of a stream."""
    return dg.AssetKey(["bronze", spec.name])


def stream_tag(spec: StreamSpec) -> dict[str, str]:
    """Tags that mark runs of one stream's ingestion."""
    return {"lakehouse/stream": spec.name}
