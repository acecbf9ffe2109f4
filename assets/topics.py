"""Kafka topics as external assets: Dagster does not produce them, it watches them."""

import dagster as dg

from assets.keys import topic_key
from lakehouse.config import Declarations


def topic_specs(declarations: Declarations) -> list[dg.AssetSpec]:
    """One external `AssetSpec` per declared stream's topic."""
    return [
        dg.AssetSpec(
            key=topic_key(spec),
            description=spec.description or f"Kafka topic {spec.topic}",
            group_name="kafka",
            kinds={"kafka", "avro"},
            metadata={"topic": spec.topic, "registry_subject": spec.subject},
        )
        for spec in declarations.streams.values()
    ]
