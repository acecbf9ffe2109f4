"""Which tables a deployment maintains, and the knobs for each (from the stream declarations)."""

from dataclasses import dataclass

from lakehouse.config import Declarations, Maintenance
from lakehouse.windowing.declarations import LATE_EVENTS_TABLE, silver_table


@dataclass(frozen=True)
class MaintainedTable:
    """One Iceberg table under compaction, snapshot expiry and orphan removal."""

    name: str  # short name used in asset keys: the stream, "dead_letters", "<stream>_<window>"
    identifier: str  # namespace.table
    knobs: Maintenance
    asset: tuple[str, ...] = ()  # the key path of the table's asset; default ("bronze", name)

    @property
    def asset_path(self) -> tuple[str, ...]:
        """The key path of the asset whose table this is."""
        return self.asset or ("bronze", self.name)


def maintained_tables(declarations: Declarations) -> list[MaintainedTable]:
    """Every bronze table, the dead-letter table, every silver table (with its stream's knobs)
    and the late-events table: each silver pass commits too."""
    streams = declarations.streams.values()
    tables = [MaintainedTable(spec.name, spec.table, spec.maintenance) for spec in streams]
    tables.append(MaintainedTable("dead_letters", declarations.dead_letter_table, Maintenance()))
    for spec in streams:
        for window in spec.windows:
            identifier = silver_table(spec.name, window)
            table = MaintainedTable(
                identifier.split(".", 1)[1],
                identifier,
                spec.maintenance,
                ("silver", spec.name, window),
            )
            tables.append(table)
    if any(spec.windows for spec in streams):
        late = MaintainedTable(
            "late_events", LATE_EVENTS_TABLE, Maintenance(), ("silver", "late_events")
        )
        tables.append(late)
    return tables
