"""Schema assets: one per stream, `schema/<stream>`, between its topic and its bronze table.

A materialization resolves every registered version of the stream's subject against the bronze
table, applies the safe changes and publishes the diff and the table's schema history; its
check fails while a version cannot be written (docs/schema-evolution.md).
"""

import dagster as dg

from assets.heartbeat import heartbeat
from assets.keys import schema_key, topic_key
from assets.resources import LakehouseResource
from lakehouse.config import StreamSpec
from lakehouse.schema.subject import SchemaReport, apply_subject

FITS_CHECK = "writer_schemas_fit_table"

_HISTORY_COLUMNS = [
    dg.TableColumn("iceberg_schema_id", "int"),
    dg.TableColumn("current", "bool"),
    dg.TableColumn("writer_schema", "string"),
    dg.TableColumn("changes", "string"),
    dg.TableColumn("applied_by", "string"),
    dg.TableColumn("applied_at", "string"),
    dg.TableColumn("columns", "int"),
]


def _history(report: SchemaReport) -> dg.TableMetadataValue:
    records = [
        dg.TableRecord(
            {
                "iceberg_schema_id": entry.schema_id,
                "current": entry.current,
                "writer_schema": entry.source or "-",
                "changes": "; ".join(map(str, entry.changes)) or "-",
                "applied_by": entry.applied_by or "-",
                "applied_at": entry.applied_at or "-",
                "columns": entry.columns,
            }
        )
        for entry in reversed(report.history)
    ]
    return dg.MetadataValue.table(records, schema=dg.TableSchema(columns=_HISTORY_COLUMNS))


def _fits(spec: StreamSpec, report: SchemaReport) -> dg.AssetCheckResult:
    pause = spec.schema_policy.on_incompatible == "pause"
    return dg.AssetCheckResult(
        check_name=FITS_CHECK,
        passed=report.healthy,
        severity=dg.AssetCheckSeverity.ERROR if pause else dg.AssetCheckSeverity.WARN,
        metadata={
            "policy": spec.schema_policy.on_incompatible,
            "incompatible_versions": len(report.refused),
            "reasons": "\n".join(v.refused or "" for v in report.refused) or "-",
            "paused": report.paused or "-",
        },
    )


def schema_asset(spec: StreamSpec) -> dg.AssetsDefinition:
    """The schema asset of one stream, with its check."""

    @dg.asset(
        key=schema_key(spec),
        deps=[topic_key(spec)],
        description=f"Writer schemas of {spec.subject} applied to {spec.table} "
        f"(incompatible versions: {spec.schema_policy.on_incompatible}).",
        group_name="schema",
        kinds={"avro", "iceberg"},
        metadata={"subject": spec.subject, "table": spec.table},
        check_specs=[
            dg.AssetCheckSpec(
                FITS_CHECK,
                asset=schema_key(spec),
                description="Every registered version can be written to the table; not paused.",
            )
        ],
    )
    def _schema(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        settings = lakehouse.settings()
        with heartbeat(context, settings):
            report = apply_subject(
                settings, spec, applied_by=f"schema/{spec.name} run {context.run.run_id}"
            )
        for check in report.refused:
            context.log.warning(f"v{check.version}: {check.refused}")
        return dg.MaterializeResult(
            metadata={**report.as_metadata(), "schema_history": _history(report)},
            check_results=[_fits(spec, report)],
        )

    return _schema


def schema_assets(streams: list[StreamSpec]) -> list[dg.AssetsDefinition]:
    """One schema asset per declared stream."""
    return [schema_asset(spec) for spec in streams]
