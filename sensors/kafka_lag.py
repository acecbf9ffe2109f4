"""Lag sensors: Kafka end offsets minus the offsets committed in the table → run requests."""

import json
import time

import dagster as dg

from assets.heartbeat import HEARTBEAT_TAG
from assets.keys import bronze_key, stream_tag, topic_key
from assets.resources import LakehouseResource
from lakehouse.config import StreamSpec
from lakehouse.ingest import stream_state
from lakehouse.trigger import decide
from sensors.run_health import check_runs


def lag_sensor(spec: StreamSpec) -> dg.SensorDefinition:
    """Every few seconds: observe the lag of `spec.topic`, request a bronze run when due."""

    job = dg.define_asset_job(
        name=f"ingest_{spec.name}",
        selection=[bronze_key(spec)],
        tags={**stream_tag(spec), **HEARTBEAT_TAG},
        description=f"Ingest {spec.topic} into {spec.table} (bronze/{spec.name} and its checks).",
    )

    @dg.sensor(
        name=f"kafka_lag_{spec.name}",
        target=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests a bronze/{spec.name} run when {spec.topic} has lag.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        settings = lakehouse.settings()
        state = stream_state(settings, spec)
        ranges = state.ranges
        decision = decide(
            spec.topic, ranges, spec.trigger, now=time.time(), lag_since=cursor.get("lag_since")
        )
        observation = dg.AssetObservation(
            asset_key=topic_key(spec),
            metadata={
                "lag": decision.lag,
                "partitions_with_lag": len(ranges),
            },
        )
        new_cursor = json.dumps({"lag_since": decision.lag_since})
        in_flight = check_runs(
            context.instance, stream_tag(spec), dead_after_seconds=settings.run_dead_after_seconds
        ).alive
        if state.paused is not None:
            return dg.SensorResult(
                skip_reason=f"paused: {state.paused}", asset_events=[observation], cursor=new_cursor
            )
        if decision.run and in_flight:
            return dg.SensorResult(
                skip_reason=f"{decision.reason}, but a bronze/{spec.name} run is in flight",
                asset_events=[observation],
                cursor=json.dumps({"lag_since": cursor.get("lag_since") or time.time()}),
            )
        if not decision.run:
            return dg.SensorResult(
                skip_reason=decision.reason, asset_events=[observation], cursor=new_cursor
            )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=decision.run_key,
                    tags={**stream_tag(spec), "lakehouse/reason": decision.reason[:200]},
                )
            ],
            asset_events=[observation],
            cursor=new_cursor,
        )

    return _sensor


def lag_sensors(streams: list[StreamSpec]) -> list[dg.SensorDefinition]:
    """One lag sensor per declared stream."""
    return [lag_sensor(spec) for spec in streams]
