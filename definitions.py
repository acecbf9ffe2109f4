"""Composition root: the Dagster definitions generated from the stream declarations."""

import dagster as dg

from assets.bronze import bronze_assets
from assets.resources import LakehouseResource
from assets.topics import topic_specs
from lakehouse.config import load_declarations
from lakehouse.settings import load_settings
from sensors.kafka_lag import lag_sensors

declarations = load_declarations(load_settings().streams_file)

defs = dg.Definitions(
    assets=[*topic_specs(declarations), *bronze_assets(declarations)],
    sensors=lag_sensors(list(declarations.streams.values())),
    resources={"lakehouse": LakehouseResource()},
)
