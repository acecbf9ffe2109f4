"""Reference (lookup) tables: a CSV file loaded into an Iceberg table, whole.

A window declaration's `join` enriches events with such a table (docs/windows.md). Each load
replaces the table's rows in one commit; a file whose content did not change (its SHA-256 is
kept as a table property) commits nothing, so materializing it again adds no snapshot.
"""

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pyiceberg.catalog import Catalog

from lakehouse.errors import ConfigError
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.evolution import evolve_schema, fits_schema

CONTENT_HASH = "lakehouse.reference.sha256"


@dataclass(frozen=True)
class ReferenceReport:
    """What one load did."""

    table: str
    rows: int
    columns: tuple[str, ...]
    changed: bool
    snapshot_id: int | None
    seconds: float

    def as_metadata(self) -> dict[str, Any]:
        """For the Dagster asset."""
        return {
            "rows": self.rows,
            "columns": ", ".join(self.columns),
            "changed": self.changed,
            "snapshot_id": str(self.snapshot_id or ""),
            "seconds": round(self.seconds, 3),
        }


def load_csv_table(catalog: Catalog, identifier: str, path: Path) -> ReferenceReport:
    """Replace the rows of `identifier` with those of the CSV file at `path` (header row;
    column types inferred from the whole file)."""
    started = time.monotonic()
    try:
        content = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigError(f"reference table {identifier}: no CSV file at {path}") from exc
    digest = hashlib.sha256(content).hexdigest()
    rows = pl.read_csv(content, infer_schema_length=None).to_arrow()
    table = ensure_table(catalog, identifier, rows.schema)
    changed = table.properties.get(CONTENT_HASH) != digest
    if changed:
        tx = table.transaction()
        if not fits_schema(table.schema(), rows.schema):
            evolve_schema(tx, rows.schema)
        tx.overwrite(rows.cast(tx.table_metadata.schema().as_arrow()))
        tx.set_properties({CONTENT_HASH: digest})
        table = tx.commit_transaction()
    snapshot = table.current_snapshot()
    return ReferenceReport(
        table=identifier,
        rows=rows.num_rows,
        columns=tuple(rows.column_names),
        changed=changed,
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        seconds=time.monotonic() - started,
    )
