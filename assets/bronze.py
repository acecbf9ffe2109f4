"""Bronze assets: one per declared stream, its topic into `bronze.<stream>` exactly once."""

import logging

import dagster as dg
from pydantic import Field

from assets.heartbeat import heartbeat
from assets.keys import bronze_key, schema_key, stream_tag, topic_key, version_table_key
from assets.resources import LakehouseResource
from lakehouse.audit import check_conservation, check_offset_chain
from lakehouse.config import Declarations, StreamSpec
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.ingest import IngestReport, ingest
from lakehouse.schema.policy import version_tables
from lakehouse.settings import Settings

log = logging.getLogger(__name__)

CHAIN_CHECK = "offsets_contiguous"
CONSERVATION_CHECK = "rows_plus_dead_letters_equal_offsets"
DEAD_LETTER_CHECK = "dead_letter_rate"


class BronzeRunConfig(dg.Config):
    """Leave empty to ingest from the table's offsets to the end; or replay a given range."""

    replay_ranges: str | None = Field(
        default=None,
        description="Explicit offsets 'partition:start-end,...' (end exclusive). Offsets already "
        "in the table are skipped, so a replay never duplicates.",
    )


def parse_ranges(text: str) -> dict[int, tuple[int, int]]:
    """'0:10-20,3:0-5' → {0: (10, 20), 3: (0, 5)}."""
    ranges = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        partition, _, span = part.partition(":")
        start, _, end = span.partition("-")
        ranges[int(partition)] = (int(start), int(end))
    return ranges


def _check_results(
    spec: StreamSpec, declarations: Declarations, lakehouse: LakehouseResource, report: IngestReport
) -> list[dg.AssetCheckResult]:
    catalog = load_catalog(lakehouse.settings())
    table = table_or_none(catalog, spec.table)
    if table is None:
        return []
    chain = check_offset_chain(table, spec.topic)
    conservation = check_conservation(
        table, table_or_none(catalog, declarations.dead_letter_table), spec.topic
    )
    handled = report.records_written + report.dead_letters
    rate = report.dead_letters / handled if handled else 0.0
    return [
        dg.AssetCheckResult(
            check_name=CHAIN_CHECK,
            passed=chain.ok,
            metadata={"commits_checked": chain.commits, "problems": "\n".join(chain.problems)},
        ),
        dg.AssetCheckResult(
            check_name=CONSERVATION_CHECK,
            passed=conservation.ok,
            metadata={
                "rows": conservation.rows,
                "dead_letters": conservation.dead_letters,
                "offsets_consumed": conservation.offsets_consumed,
                "duplicates": conservation.duplicates,
            },
        ),
        dg.AssetCheckResult(
            check_name=DEAD_LETTER_CHECK,
            passed=rate <= spec.checks.max_dead_letter_rate,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"dead_letter_rate": rate, "threshold": spec.checks.max_dead_letter_rate},
        ),
    ]


def bronze_asset(spec: StreamSpec, declarations: Declarations) -> dg.AssetsDefinition:
    """The bronze asset of one stream, with its checks."""

    @dg.asset(
        key=bronze_key(spec),
        deps=[topic_key(spec), schema_key(spec)],
        description=f"{spec.description} Iceberg table {spec.table}, ingested exactly once.",
        group_name="bronze",
        kinds={"iceberg", "kafka"},
        tags=stream_tag(spec),
        metadata={
            "table": spec.table,
            "topic": spec.topic,
            "partition_by": list(spec.partition_by),
        },
        check_specs=[
            dg.AssetCheckSpec(
                CHAIN_CHECK,
                asset=bronze_key(spec),
                description="Each commit starts where the previous one ended.",
            ),
            dg.AssetCheckSpec(
                CONSERVATION_CHECK,
                asset=bronze_key(spec),
                description="Rows + dead letters = offsets consumed, no duplicate.",
            ),
            dg.AssetCheckSpec(
                DEAD_LETTER_CHECK,
                asset=bronze_key(spec),
                description="Dead-letter rate of the run under the threshold.",
            ),
        ],
    )
    def _bronze(
        context: dg.AssetExecutionContext, config: BronzeRunConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        settings = lakehouse.settings()
        with heartbeat(context, settings, stream_tag(spec)):
            report = ingest(
                settings,
                spec,
                run_id=context.run.run_id,
                dead_letter_table=declarations.dead_letter_table,
                explicit_ranges=parse_ranges(config.replay_ranges)
                if config.replay_ranges
                else None,
                log=context.log.info,
            )
        for table, rows in report.version_tables.items():  # policy new_table
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=version_table_key(spec, table),
                    metadata={"table": table, "records_written": rows},
                )
            )
        return dg.MaterializeResult(
            metadata=report.as_metadata(),
            check_results=_check_results(spec, declarations, lakehouse, report),
        )

    return _bronze


def bronze_assets(declarations: Declarations) -> list[dg.AssetsDefinition]:
    """One bronze asset per declared stream."""
    return [bronze_asset(spec, declarations) for spec in declarations.streams.values()]


def version_table_specs(declarations: Declarations, settings: Settings) -> list[dg.AssetSpec]:
    """The `<table>__v<N>` tables that exist for streams whose policy is new_table (each its own
    asset, downstream of the stream's schema asset); a table made since shows after a reload.
    The catalog is only asked when some stream has that policy."""
    streams = [
        s for s in declarations.streams.values() if s.schema_policy.on_incompatible == "new_table"
    ]
    if not streams:
        return []
    try:
        catalog = load_catalog(settings)
        found = {spec.name: version_tables(catalog, spec) for spec in streams}
    except Exception as exc:  # definitions must load even when the catalog cannot be read
        log.warning("version tables not listed (catalog unreadable): %s", exc)
        return []
    return [
        dg.AssetSpec(
            key=version_table_key(spec, table),
            deps=[schema_key(spec)],
            description=f"Iceberg table {table}: a subject version {spec.table} could not take.",
            group_name="bronze",
            kinds={"iceberg"},
            metadata={"table": table},
        )
        for spec in streams
        for table in found[spec.name]
    ]
