"""Maintenance assets per table: compaction, snapshot expiry, orphan-file removal.

Each sits downstream of the table it maintains, so lineage reads bronze/clicks → its
maintenance. The work is in `lakehouse.iceberg.maintenance`; these only unpack config.
"""

from collections.abc import Callable
from datetime import timedelta

import dagster as dg
from pydantic import Field
from pyiceberg.expressions.parser import parse as parse_filter
from pyiceberg.table import Table

from assets.heartbeat import heartbeat
from assets.resources import LakehouseResource
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.iceberg.maintenance import compact, expire_snapshots, remove_orphan_files
from lakehouse.iceberg.maintenance_plan import MaintainedTable


class CompactionConfig(dg.Config):
    """Compaction options; defaults come from the stream declaration."""

    target_file_size_bytes: int | None = Field(default=None, description="Override the target.")
    partition_filter: str | None = Field(
        default=None, description="Only partitions matching, e.g. \"event_time >= '2026-11-01'\"."
    )


class ExpiryConfig(dg.Config):
    """Snapshot expiry options; defaults come from the stream declaration."""

    retention_days: float | None = None
    retain_last: int | None = None
    dry_run: bool = Field(default=False, description="List what would go; delete nothing.")


class OrphanConfig(dg.Config):
    """Orphan-file removal options."""

    older_than_days: float | None = None
    dry_run: bool = Field(default=False, description="List what would go; delete nothing.")


def _loader(lakehouse: LakehouseResource, table: MaintainedTable) -> Callable[[], Table] | None:
    """Loads the table fresh on each call (maintenance retries reload); None if it does not
    exist yet."""
    catalog = load_catalog(lakehouse.settings())
    if table_or_none(catalog, table.identifier) is None:
        return None
    return lambda: catalog.load_table(table.identifier)


def _skipped(table: MaintainedTable) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"skipped": f"{table.identifier} does not exist yet"})


def table_key(table: MaintainedTable) -> dg.AssetKey:
    """The asset of the maintained table."""
    return dg.AssetKey(list(table.asset_path))


def maintenance_key(table: MaintainedTable, job: str) -> dg.AssetKey:
    """maintenance/<table>/<job>."""
    return dg.AssetKey(["maintenance", table.name, job])


def maintenance_assets(table: MaintainedTable) -> list[dg.AssetsDefinition]:
    """Compaction, snapshot expiry and orphan removal for one table."""
    common = {
        "deps": [table_key(table)],
        "group_name": "maintenance",
        "kinds": {"iceberg"},
        "tags": {"lakehouse/maintains": table.name},
    }

    @dg.asset(
        key=maintenance_key(table, "compaction"),
        description=f"Bin-packs small files of {table.identifier} and merges manifests.",
        **common,
    )
    def _compaction(
        context: dg.AssetExecutionContext, config: CompactionConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        if (load := _loader(lakehouse, table)) is None:
            return _skipped(table)
        with heartbeat(context, lakehouse.settings()):
            report = compact(
                load,
                target_file_size_bytes=config.target_file_size_bytes
                or table.knobs.target_file_size_bytes,
                partition_filter=parse_filter(config.partition_filter)
                if config.partition_filter
                else None,
            )
        context.log.info(f"compaction of {table.identifier}: {report.as_metadata()}")
        return dg.MaterializeResult(metadata=report.as_metadata())

    @dg.asset(
        key=maintenance_key(table, "snapshot_expiry"),
        description=f"Expires old snapshots of {table.identifier} and deletes their files.",
        **common,
    )
    def _expiry(
        context: dg.AssetExecutionContext, config: ExpiryConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        if (load := _loader(lakehouse, table)) is None:
            return _skipped(table)
        days = config.retention_days or table.knobs.snapshot_retention_days
        with heartbeat(context, lakehouse.settings()):
            report = expire_snapshots(
                load,
                older_than=timedelta(days=days),
                retain_last=config.retain_last or table.knobs.min_snapshots_to_keep,
                dry_run=config.dry_run,
            )
        return dg.MaterializeResult(metadata=report.as_metadata())

    @dg.asset(
        key=maintenance_key(table, "orphan_files"),
        description=f"Deletes files under {table.identifier} that no metadata references.",
        **common,
    )
    def _orphans(
        context: dg.AssetExecutionContext, config: OrphanConfig, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        if (load := _loader(lakehouse, table)) is None:
            return _skipped(table)
        days = config.older_than_days or table.knobs.orphan_min_age_days
        with heartbeat(context, lakehouse.settings()):
            report = remove_orphan_files(
                load,
                older_than=timedelta(days=days),
                dry_run=config.dry_run,
            )
        return dg.MaterializeResult(metadata=report.as_metadata())

    return [_compaction, _expiry, _orphans]


def dead_letters_spec(declarations_bronze_keys: list[dg.AssetKey]) -> dg.AssetSpec:
    """The dead-letter table: written by every bronze run, shown downstream of them all."""
    return dg.AssetSpec(
        key=dg.AssetKey(["bronze", "dead_letters"]),
        deps=declarations_bronze_keys,
        description="Messages that could not be decoded, with topic, partition, offset and reason.",
        group_name="bronze",
        kinds={"iceberg"},
    )
