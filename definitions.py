"""Composition root: the Dagster definitions generated from the stream declarations."""

import dagster as dg

from assets.bronze import bronze_assets, version_table_specs
from assets.keys import bronze_key
from assets.maintenance import dead_letters_spec, maintenance_assets
from assets.reference import reference_assets, reference_keys_by_table
from assets.replay import replay_assets
from assets.resources import LakehouseResource
from assets.schema import schema_assets
from assets.silver import late_events_spec, silver_assets
from assets.topics import topic_specs
from lakehouse.config import load_declarations
from lakehouse.iceberg.maintenance_plan import maintained_tables
from lakehouse.settings import load_settings
from sensors.kafka_lag import lag_sensors
from sensors.run_health import dead_runs_sensor
from sensors.schema import schema_sensors
from sensors.silver import silver_sensors
from sensors.small_files import small_files_sensor, table_maintenance

settings = load_settings()
declarations = load_declarations(settings.streams_file)
streams = list(declarations.streams.values())
tables = maintained_tables(declarations)

defs = dg.Definitions(
    assets=[
        *topic_specs(declarations),
        *schema_assets(streams),
        *bronze_assets(declarations),
        *replay_assets(declarations),
        *version_table_specs(declarations, settings),
        dead_letters_spec([bronze_key(spec) for spec in streams]),
        *(asset for table in tables for asset in maintenance_assets(table)),
        *reference_assets(declarations),
        *silver_assets(declarations),
        *late_events_spec(declarations),
    ],
    sensors=[
        *lag_sensors(streams),
        *schema_sensors(streams),
        *silver_sensors(streams, reference_keys_by_table(declarations)),
        small_files_sensor(tables),
        dead_runs_sensor(),
    ],
    schedules=[table_maintenance(tables)],
    resources={"lakehouse": LakehouseResource()},
    # One process per run: a step process of its own would import everything a second time.
    executor=dg.in_process_executor,
)
