"""Reference (lookup) tables: one asset per `reference:` entry of the declarations, a CSV
file loaded into Iceberg (`lakehouse.reference`)."""

from pathlib import Path

import dagster as dg

from assets.keys import reference_key
from assets.resources import LakehouseResource
from lakehouse.config import Declarations, ReferenceSpec
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.reference import load_csv_table


def reference_asset(name: str, spec: ReferenceSpec) -> dg.AssetsDefinition:
    """Loads `spec.csv` into `spec.table`, replacing its rows when the file changed."""

    @dg.asset(
        key=reference_key(name),
        description=spec.description or f"{spec.table}, loaded from {spec.csv}.",
        group_name="reference",
        kinds={"csv", "iceberg"},
        metadata={"table": spec.table, "csv": spec.csv},
    )
    def _reference(lakehouse: LakehouseResource) -> dg.MaterializeResult:
        settings = lakehouse.settings()
        path = spec.csv_path(Path(settings.streams_file))
        report = load_csv_table(load_catalog(settings), spec.table, path)
        return dg.MaterializeResult(metadata=report.as_metadata())

    return _reference


def reference_assets(declarations: Declarations) -> list[dg.AssetsDefinition]:
    """One asset per declared reference table."""
    return [reference_asset(name, spec) for name, spec in declarations.reference.items()]


def reference_keys_by_table(declarations: Declarations) -> dict[str, dg.AssetKey]:
    """Iceberg table → the asset that loads it (for lineage of the windows that join it)."""
    return {spec.table: reference_key(name) for name, spec in declarations.reference.items()}
