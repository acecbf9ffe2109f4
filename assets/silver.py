"""Silver assets: one per window declaration, `silver/<stream>/<window>` → Iceberg
`silver.<stream>_<window>`, computed from `bronze/<stream>` by `lakehouse.windowing`."""

from typing import Any

import dagster as dg

from assets.heartbeat import heartbeat
from assets.keys import bronze_key, silver_key, silver_tag
from assets.reference import reference_keys_by_table
from assets.resources import LakehouseResource
from lakehouse.config import Declarations, StreamSpec
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.windowing.audit import WindowAudit, audit_recent_windows
from lakehouse.windowing.declarations import LATE_EVENTS_TABLE
from lakehouse.windowing.durations import parse_duration_us
from lakehouse.windowing.silver import SilverReport, run_silver_pass, silver_table_name

RECOMPUTE_CHECK = "recent_windows_match_bronze"
LATE_RATE_CHECK = "late_event_rate"
WATERMARK_CHECK = "watermark_not_stalled"
AUDITED_WINDOWS = 20


def _checks(spec: StreamSpec, window: str, report: SilverReport, audit: WindowAudit) -> list[Any]:
    declared = spec.windows[window]
    processed = report.on_time + report.late_events
    rate = report.late_events / processed if processed else 0.0
    delay = parse_duration_us(declared.checks.max_watermark_delay) / 1e6
    lag = report.watermark_lag_seconds
    stalled = report.rows_read > 0 and (lag is None or lag > delay)
    return [
        dg.AssetCheckResult(
            check_name=RECOMPUTE_CHECK,
            passed=audit.ok,
            metadata={"windows_checked": audit.checked, "mismatches": "\n".join(audit.mismatches)},
        ),
        dg.AssetCheckResult(
            check_name=LATE_RATE_CHECK,
            passed=rate <= declared.checks.max_late_event_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"late_event_rate": rate, "threshold": declared.checks.max_late_event_rate},
        ),
        dg.AssetCheckResult(
            check_name=WATERMARK_CHECK,
            passed=not stalled,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "watermark_lag_seconds": lag if lag is not None else -1.0,
                "threshold_seconds": delay,
                "bronze_rows_new": report.rows_read,
            },
        ),
    ]


def _metadata(report: SilverReport) -> dict[str, Any]:
    metadata = {k: v for k, v in report.as_metadata().items() if v is not None}
    if report.watermark is not None:
        metadata["watermark"] = dg.MetadataValue.timestamp(report.watermark)
    return metadata


def silver_asset(
    spec: StreamSpec, window: str, lookups: dict[str, dg.AssetKey]
) -> dg.AssetsDefinition:
    """The silver asset of one window declaration, with its three checks."""
    declared = spec.windows[window]
    key = silver_key(spec, window)
    deps = [bronze_key(spec)]
    if declared.join is not None and declared.join.table in lookups:
        deps.append(lookups[declared.join.table])
    shape = (
        f"sliding {declared.sliding.size} every {declared.sliding.every}"
        if declared.sliding
        else f"tumbling {declared.tumbling}"
    )

    @dg.asset(
        key=key,
        deps=deps,
        description=(
            f"{shape} windows of {spec.table} by {', '.join(declared.group_by) or 'nothing'}: "
            f"{', '.join(declared.aggregate)}. Iceberg table {silver_table_name(spec, window)}; "
            "late events in silver.late_events (docs/windows.md)."
        ),
        group_name="silver",
        kinds={"polars", "iceberg"},
        metadata={
            "table": silver_table_name(spec, window),
            "window": shape,
            "where": declared.where or "",
            "allowed_lateness": declared.allowed_lateness,
            "emit": declared.emit,
        },
        check_specs=[
            dg.AssetCheckSpec(
                RECOMPUTE_CHECK,
                asset=key,
                blocking=True,
                description=f"The last {AUDITED_WINDOWS} final windows equal a recomputation "
                "from bronze.",
            ),
            dg.AssetCheckSpec(
                LATE_RATE_CHECK,
                asset=key,
                description="Share of this run's events that were late, under the threshold.",
            ),
            dg.AssetCheckSpec(
                WATERMARK_CHECK,
                asset=key,
                description="The watermark trails wall-clock time by less than the threshold "
                "while bronze receives data.",
            ),
        ],
    )
    def _silver(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        settings = lakehouse.settings()
        catalog = load_catalog(settings)
        with heartbeat(context, settings, silver_tag(spec)):
            report = run_silver_pass(settings, spec, window, catalog=catalog, log=context.log.info)
            audit = audit_recent_windows(catalog, spec, window, AUDITED_WINDOWS)
        return dg.MaterializeResult(
            metadata=_metadata(report), check_results=_checks(spec, window, report, audit)
        )

    return _silver


def silver_assets(declarations: Declarations) -> list[dg.AssetsDefinition]:
    """One silver asset per window declaration of every stream."""
    lookups = reference_keys_by_table(declarations)
    return [
        silver_asset(spec, window, lookups)
        for spec in declarations.streams.values()
        for window in spec.windows
    ]


def late_events_spec(declarations: Declarations) -> list[dg.AssetSpec]:
    """`silver.late_events`: written by every silver asset, shown downstream of them all."""
    keys = [silver_key(spec, w) for spec in declarations.streams.values() for w in spec.windows]
    if not keys:
        return []
    return [
        dg.AssetSpec(
            key=dg.AssetKey(["silver", "late_events"]),
            deps=keys,
            description="Events that arrived for windows already final: stream, window, Kafka "
            "partition and offset, event time, watermark, lateness, whether corrected.",
            group_name="silver",
            kinds={"iceberg"},
            metadata={"table": LATE_EVENTS_TABLE},
        )
    ]
