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


def schema_key(spec: StreamSpec) -> dg.AssetKey:
    """The stream's writer schemas as applied to its bronze table."""
    return dg.AssetKey(["schema", spec.name])


def replay_key(spec: StreamSpec) -> dg.AssetKey:
    """The replay of the stream's dead letters into its bronze table."""
    return dg.AssetKey(["bronze", spec.name, "replay_dead_letters"])


def version_table_key(spec: StreamSpec, identifier: str) -> dg.AssetKey:
    """A `<table>__v<N>` table written under the new_table policy: bronze/<stream>__v<N>."""
    suffix = identifier.rsplit("__v", 1)[1]
    return dg.AssetKey(["bronze", f"{spec.name}__v{suffix}"])
