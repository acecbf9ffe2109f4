"""Iceberg: the catalog, the exactly-once commit path, schema evolution, dead letters.

`commit.commit_batch` is the one way rows reach a table (DESIGN §2); `maintenance/` never
writes offsets.
"""

from lakehouse.iceberg.catalog import ensure_table, load_catalog, table_or_none
from lakehouse.iceberg.commit import CommitOutcome, commit_batch, committed_offsets
from lakehouse.iceberg.evolution import evolve_schema

__all__ = [
    "CommitOutcome",
    "commit_batch",
    "committed_offsets",
    "ensure_table",
    "evolve_schema",
    "load_catalog",
    "table_or_none",
]
