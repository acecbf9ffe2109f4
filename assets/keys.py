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


def silver_key(spec: StreamSpec, window: str) -> dg.AssetKey:
    """The silver table of one window declaration of a stream."""
    return dg.AssetKey(["silver", spec.name, window])


def silver_tag(spec: StreamSpec) -> dict[str, str]:
    """Tags that mark silver runs of one stream (apart from its ingestion runs)."""
    return {"lakehouse/silver": spec.name}


def reference_key(name: str) -> dg.AssetKey:
    """A lookup table loaded from a file."""
    return dg.AssetKey(["reference", name])
