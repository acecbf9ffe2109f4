"""The oracle behind the blocking check of a silver asset: the most recent final windows
equal a recomputation from bronze.

The recomputation reads the bronze rows of those windows up to the silver position, enriches
them with the lookup snapshot the last pass used (the current one if it has been expired),
and leaves out of each window the late events that arrived after it froze (recorded in
`silver.late_events` with a watermark at or past window end + allowed lateness).
"""

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pyiceberg.catalog import Catalog

from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import table_or_none
from lakehouse.windowing.compute import KAFKA_COLUMNS, OFFSET, PARTITION, WS, WindowPlan
from lakehouse.windowing.ranges import merge_intervals
from lakehouse.windowing.silver import silver_table_name
from lakehouse.windowing.state import SilverState
from lakehouse.windowing.store import (
    LATE_EVENTS_TABLE,
    EqualTo,
    Lookup,
    old_rows_filter,
    polars_schema,
    read_lookup,
    read_rows,
)


@dataclass(frozen=True)
class WindowAudit:
    """Whether the recent final windows match bronze, and what did not."""

    checked: int
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No window differs from its recomputation."""
        return not self.mismatches


def audit_recent_windows(
    catalog: Catalog, stream: StreamSpec, window: str, limit: int = 20
) -> WindowAudit:
    """Recompute the `limit` most recent final windows (by start, then keys) from bronze."""
    silver = table_or_none(catalog, silver_table_name(stream, window))
    bronze = table_or_none(catalog, stream.table)
    if silver is None or bronze is None or silver.current_snapshot() is None:
        return WindowAudit(0)
    state = SilverState.from_properties(silver.properties)
    spec = stream.windows[window]
    lookup = _lookup(catalog, spec.join.table, spec.join.on, state) if spec.join else None
    plan = WindowPlan.build(
        stream, window, polars_schema(bronze), lookup.rows.schema if lookup else None
    )
    current = pl.from_arrow(silver.scan(row_filter=EqualTo("final", True)).to_arrow())
    assert isinstance(current, pl.DataFrame)
    keys = [WS, *plan.key_columns]
    recent = (
        current.with_columns(pl.col("window_start").dt.epoch("us").alias(WS))
        .sort(keys, descending=True, nulls_last=True)
        .head(limit)
    )
    if recent.height == 0:
        return WindowAudit(0)
    starts = recent.get_column(WS).unique().to_list()
    intervals = merge_intervals([(s, s + plan.shape.size_us) for s in starts])
    columns = (*KAFKA_COLUMNS, *plan.bronze_columns)
    rows = read_rows(
        bronze,
        old_rows_filter(state.position, plan.event_time, list(intervals)),
        columns,
    )
    rows, _ = plan.enrich(plan.with_time(rows), lookup.rows if lookup else None)
    assigned = plan.assign(plan.keep(rows)).filter(pl.col(WS).is_in(starts))
    frozen = _frozen_late_events(catalog, stream, window)
    if frozen.height:
        ends = pl.col(WS) + plan.shape.size_us + spec.allowed_lateness_us
        assigned = assigned.join(frozen.lazy(), on=[PARTITION, OFFSET], how="left").filter(
            pl.col("__late_wm").is_null() | (pl.col("__late_wm") < ends)
        )
    expected = plan.group(assigned)
    return WindowAudit(recent.height, _differences(recent, expected, keys, list(plan.aggregates)))


def _lookup(catalog: Catalog, identifier: str, key: str, state: SilverState) -> Lookup | None:
    """The lookup as the last pass saw it (its snapshot), or as it is now."""
    table = table_or_none(catalog, identifier)
    if table is None:
        return None
    snapshot = state.lookup_snapshot
    if snapshot is not None and table.snapshot_by_id(snapshot) is not None:
        rows = pl.from_arrow(table.scan(snapshot_id=snapshot).to_arrow())
        assert isinstance(rows, pl.DataFrame)
        unique = rows.unique(subset=[key], keep="first", maintain_order=True)
        return Lookup(unique, snapshot, rows.height - unique.height)
    return read_lookup(catalog, identifier, key)


def _frozen_late_events(catalog: Catalog, stream: StreamSpec, window: str) -> pl.DataFrame:
    """(partition, offset, watermark µs) of this window's late events."""
    table = table_or_none(catalog, LATE_EVENTS_TABLE)
    empty = pl.DataFrame(schema={PARTITION: pl.Int32, OFFSET: pl.Int64, "__late_wm": pl.Int64})
    if table is None:
        return empty
    late = pl.from_arrow(table.scan(row_filter=EqualTo("stream", stream.name)).to_arrow())
    assert isinstance(late, pl.DataFrame)
    late = late.filter(pl.col("window") == window)
    if late.height == 0:
        return empty
    return late.select(
        pl.col("kafka_partition").alias(PARTITION),
        pl.col("kafka_offset").alias(OFFSET),
        pl.col("watermark").dt.epoch("us").alias("__late_wm"),
    )


def _differences(
    recent: pl.DataFrame, expected: pl.DataFrame, keys: list[str], names: list[str]
) -> list[str]:
    found = {tuple(r[k] for k in keys): r for r in expected.to_dicts()}
    problems = []
    for row in recent.to_dicts():
        key = tuple(row[k] for k in keys)
        want = found.get(key)
        if want is None:
            problems.append(f"{_name(row, keys)}: no bronze rows")
            continue
        for name in names:
            if not _same(row[name], want[name]):
                problems.append(
                    f"{_name(row, keys)}: {name} = {row[name]}, bronze gives {want[name]}"
                )
    return problems


def _name(row: dict[str, Any], keys: list[str]) -> str:
    return f"window {row['window_start'].isoformat()} {[row[k] for k in keys[1:]]}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)
