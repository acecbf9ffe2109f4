"""Silver sensors: a silver run of a stream when bronze has committed past a silver table's
position (or idle partitions let the watermark close a window), and no silver run of that
stream is in flight. Reads table properties only, so it stays cheap when bronze commits
every few seconds."""

from collections.abc import Mapping
from datetime import UTC, datetime

import dagster as dg

from assets.heartbeat import HEARTBEAT_TAG
from assets.keys import silver_key, silver_tag
from assets.resources import LakehouseResource
from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.windowing.progress import silver_progress
from sensors.run_health import check_runs


def silver_sensor(
    spec: StreamSpec, lookups: Mapping[str, dg.AssetKey] | None = None
) -> dg.SensorDefinition:
    """Every few seconds: request a run of the stream's silver assets that have work; a
    lookup table a due window joins is loaded first in the same run while it does not exist
    (`lookups`: lookup table → the asset that loads it)."""
    joins = {
        window: (declared.join.table, (lookups or {})[declared.join.table])
        for window, declared in spec.windows.items()
        if declared.join is not None and declared.join.table in (lookups or {})
    }
    job = dg.define_asset_job(
        name=f"silver_{spec.name}",
        selection=[
            *{key for _, key in joins.values()},
            *(silver_key(spec, window) for window in spec.windows),
        ],
        tags={**silver_tag(spec), **HEARTBEAT_TAG},
        description=f"Window {spec.table} into its silver tables.",
    )

    @dg.sensor(
        name=f"silver_due_{spec.name}",
        target=job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Requests a silver run of {spec.name} when bronze has new data for it.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SensorResult:
        settings = lakehouse.settings()
        catalog = load_catalog(settings)
        progress = silver_progress(catalog, spec, datetime.now(UTC))
        behind = {p.window: p.offsets_behind for p in progress.windows}
        if not progress.due:
            return dg.SensorResult(skip_reason=f"{spec.name}: silver is up to date ({behind})")
        health = check_runs(
            context.instance, silver_tag(spec), dead_after_seconds=settings.run_dead_after_seconds
        )
        if health.alive:
            reason = f"{spec.name}: due {progress.due}, but a silver run is in flight"
            return dg.SensorResult(skip_reason=reason)
        missing = {
            key
            for window, (table, key) in joins.items()
            if window in progress.due and table_or_none(catalog, table) is None
        }
        request = dg.RunRequest(
            run_key=progress.run_key,
            asset_selection=[*missing, *(silver_key(spec, window) for window in progress.due)],
            tags=silver_tag(spec),
        )
        return dg.SensorResult(run_requests=[request])

    return _sensor


def silver_sensors(
    streams: list[StreamSpec], lookups: Mapping[str, dg.AssetKey] | None = None
) -> list[dg.SensorDefinition]:
    """One sensor per stream that declares windows."""
    return [silver_sensor(spec, lookups) for spec in streams if spec.windows]
