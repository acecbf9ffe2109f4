"""Small-file sensor: compaction runs when a partition of a table passes its small-file threshold;
the small-file count is observed on the table's asset so the UI plots it."""

import dagster as dg

from assets.heartbeat import HEARTBEAT_TAG
from assets.maintenance import maintenance_key, table_key
from assets.resources import LakehouseResource
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.iceberg.maintenance import small_file_stats
from lakehouse.iceberg.maintenance_plan import MaintainedTable


def small_files_sensor(tables: list[MaintainedTable]) -> dg.SensorDefinition:
    """One sensor over every maintained table."""

    job = dg.define_asset_job(
        name="compact_tables",
        selection=[maintenance_key(t, "compaction") for t in tables],
        tags=HEARTBEAT_TAG,
        description="Compaction of the tables the small-file sensor picks.",
    )

    @dg.sensor(
        name="small_files",
        target=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests compaction when a partition has too many small files.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
    ) -> dg.SensorResult:
        catalog = load_catalog(lakehouse.settings())
        requests, events, waiting = [], [], []
        for maintained in tables:
            table = table_or_none(catalog, maintained.identifier)
            if table is None or table.current_snapshot() is None:
                continue
            counts = small_file_stats(table, maintained.knobs.target_file_size_bytes)
            worst = max(counts.values(), default=0)
            events.append(
                dg.AssetObservation(
                    asset_key=table_key(maintained),
                    metadata={
                        "small_files": sum(counts.values()),
                        "small_files_max_partition": worst,
                    },
                )
            )
            if worst >= maintained.knobs.small_file_threshold:
                snapshot = table.current_snapshot().snapshot_id
                requests.append(
                    dg.RunRequest(
                        run_key=f"compact:{maintained.identifier}@{snapshot}",
                        asset_selection=[maintenance_key(maintained, "compaction")],
                        tags={"lakehouse/maintains": maintained.name},
                    )
                )
            else:
                waiting.append(f"{maintained.identifier}: {worst} small files at most")
        if requests:
            return dg.SensorResult(run_requests=requests, asset_events=events)
        return dg.SensorResult(
            skip_reason="; ".join(waiting) or "no table to maintain yet", asset_events=events
        )

    return _sensor


def table_maintenance(tables: list[MaintainedTable]) -> dg.ScheduleDefinition:
    """Every six hours: compaction, snapshot expiry and orphan removal of every table (often
    enough that a table committing every few seconds never piles up snapshots)."""
    keys = [
        maintenance_key(t, job)
        for t in tables
        for job in ("compaction", "snapshot_expiry", "orphan_files")
    ]
    return dg.ScheduleDefinition(
        name="table_maintenance",
        cron_schedule="15 */6 * * *",
        target=dg.define_asset_job(name="maintain_tables", selection=keys, tags=HEARTBEAT_TAG),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Compaction, snapshot expiry and orphan removal of every table.",
    )
