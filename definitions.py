"""Composition root: the Dagster definitions generated from the stream declarations."""

import dagster as dg

from assets.bronze import bronze_assets
from assets.keys import bronze_key
from assets.maintenance import dead_letters_spec, maintenance_assets
from assets.resources import LakehouseResource
from assets.topics import topic_specs
from lakehouse.config import load_declarations
from lakehouse.iceberg.maintenance_plan import maintained_tables
from lakehouse.settings import load_settings
from sensors.kafka_lag import lag_sensors
from sensors.run_health import dead_runs_sensor
from sensors.small_files import small_files_sensor, table_maintenance

declarations = load_declarations(load_settings().streams_file)
streams = list(declarations.streams.values())
tables = maintained_tables(declarations)

defs = dg.Definitions(
    assets=[
        *topic_specs(declarations),
        *bronze_assets(declarations),
        dead_letters_spec([bronze_key(spec) for spec in streams]),
        *(asset for table in tables for asset in maintenance_assets(table)),
    ],
    sensors=[*lag_sensors(streams), small_files_sensor(tables), dead_runs_sensor()],
    schedules=[table_maintenance(tables)],
    resources={"lakehouse": LakehouseResource()},
    # One process per run: a step process of its own would import everything a second time.
    executor=dg.in_process_executor,
)
