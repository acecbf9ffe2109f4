"""Schema sensors: one registry request per subject per tick; a new version (or a changed
table, policy or pause) materializes the stream's `schema/<stream>` asset."""

import dagster as dg

from assets.keys import schema_key
from assets.resources import LakehouseResource
from lakehouse.config import StreamSpec
from lakehouse.errors import RegistryError
from lakehouse.schema.watch import schema_state


def schema_sensor(spec: StreamSpec) -> dg.SensorDefinition:
    """Polls `spec.subject`'s latest version; never reads a Kafka message."""

    job = dg.define_asset_job(
        name=f"apply_schema_{spec.name}",
        selection=[schema_key(spec)],
        description=f"Apply {spec.subject}'s writer schemas to {spec.table} (schema/{spec.name}).",
    )

    @dg.sensor(
        name=f"schema_{spec.name}",
        target=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Materializes schema/{spec.name} when {spec.subject} gets a new version.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SensorResult:
        try:
            state = schema_state(lakehouse.settings(), spec)
        except RegistryError as exc:
            return dg.SensorResult(skip_reason=f"registry: {exc}")
        if state.key == context.cursor:
            return dg.SensorResult(skip_reason=f"{state.describe()}: nothing new")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(run_key=state.key, tags={"lakehouse/schema": spec.name})],
            cursor=state.key,
        )

    return _sensor


def schema_sensors(streams: list[StreamSpec]) -> list[dg.SensorDefinition]:
    """One schema sensor per declared stream."""
    return [schema_sensor(spec) for spec in streams]
