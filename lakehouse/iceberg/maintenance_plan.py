"""Which tables a deployment maintains, and the knobs for each (from the stream declarations)."""

from dataclasses import dataclass

from lakehouse.config import Declarations, Maintenance


@dataclass(frozen=True)
class MaintainedTable:
    """One Iceberg table under compaction, snapshot expiry and orphan removal."""

    name: str  # short name used in asset keys: the stream, or "dead_letters"
    identifier: str  # namespace.table
    knobs: Maintenance


def maintained_tables(declarations: Declarations) -> list[MaintainedTable]:
    """Every bronze table and the dead-letter table."""
    tables = [
        MaintainedTable(spec.name, spec.table, spec.maintenance)
        for spec in declarations.streams.values()
    ]
    tables.append(MaintainedTable("dead_letters", declarations.dead_letter_table, Maintenance()))
    return tables
