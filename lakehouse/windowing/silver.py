"""One silver pass: bronze rows new since the last commit → windows recomputed → one commit.

A pass reads the bronze rows past the silver table's position, advances the watermark,
records late events, finds the windows to (re-)emit — those the watermark closed, those
late events correct, and with `emit: updates` the open windows new rows touched —,
recomputes them from bronze (pruned by event time), and commits the rows, the position,
the watermark and the late-event outbox in one compare-and-set commit of the silver
table. Losing the race to another commit (a concurrent pass) reloads and starts again
from what that commit left, so nothing is counted twice or skipped. The lakehouse is the
state: no state store, no checkpoint file (docs/windows.md).
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from lakehouse.config import StreamSpec
from lakehouse.errors import CommitConflictError, ConfigError
from lakehouse.iceberg.catalog import load_catalog, retry_locked, table_or_none
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.settings import Settings
from lakehouse.windowing.compute import (
    KAFKA_COLUMNS,
    KAFKA_TS,
    OFFSET,
    PARTITION,
    UTC_US,
    WS,
    T,
    WindowPlan,
)
from lakehouse.windowing.declarations import silver_table
from lakehouse.windowing.late import LateRule
from lakehouse.windowing.ranges import merge_intervals
from lakehouse.windowing.state import SilverState, format_timestamp, to_datetime, to_us
from lakehouse.windowing.store import (
    LATE_EVENTS_SCHEMA,
    Lookup,
    backoff,
    commit_replacement,
    ensure_late_table,
    ensure_silver_table,
    flush_late_events,
    new_rows_filter,
    old_rows_filter,
    plan_replacement,
    polars_schema,
    read_lookup,
    read_rows,
)
from lakehouse.windowing.watermark import (
    advance,
    future_expr,
    idle_partitions,
    partition_stats,
)

KAFKA_US = "__kafka_us"
FUTURE = "__future"
COMMIT_ID = "lakehouse.commit-id"

Hook = Callable[[str], None]


def silver_table_name(stream: StreamSpec, window: str) -> str:
    """`silver.<stream>_<window>`."""
    return silver_table(stream.name, window)


@dataclass
class SilverReport:
    """What one pass did; `as_metadata()` is what the Dagster asset publishes."""

    stream: str
    window: str
    table: str
    rows_read: int = 0  # new bronze rows
    on_time: int = 0  # of those: counted into windows not yet closed
    filtered: int = 0  # dropped by `where`
    late_events: int = 0  # recorded in silver.late_events
    late_corrected: int = 0  # of those: every closed window holding them re-emitted
    no_event_time: int = 0  # rows without an event time (cannot be windowed)
    future_events: int = 0  # event time beyond the allowed skew: not moving the watermark
    unmatched_lookup: int = 0  # join key not in the lookup: kept with nulls
    lookup_duplicate_keys: int = 0
    rows_emitted: int = 0  # silver rows written (new windows and replacements)
    windows_closed: int = 0  # of those: first final emission
    corrections: int = 0  # of those: re-emitted because of late events
    bronze_rows_recomputed: int = 0  # older bronze rows read to recompute windows
    watermark: datetime | None = None
    watermark_before: datetime | None = None
    watermark_lag_seconds: float | None = None
    idle_partitions: list[int] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    snapshot_id: int | None = None
    attempts: int = 0
    conflicts: int = 0
    seconds: float = 0.0

    @property
    def committed(self) -> bool:
        """True when the pass committed to the silver table."""
        return self.snapshot_id is not None

    def as_metadata(self) -> dict[str, Any]:
        """Numbers for plots (the watermark lag among them), the rest as text."""
        return {
            "rows_read": self.rows_read,
            "rows_emitted": self.rows_emitted,
            "windows_closed": self.windows_closed,
            "corrections": self.corrections,
            "late_events": self.late_events,
            "late_corrected": self.late_corrected,
            "filtered_by_where": self.filtered,
            "future_events": self.future_events,
            "unmatched_lookup": self.unmatched_lookup,
            "no_event_time": self.no_event_time,
            "bronze_rows_recomputed": self.bronze_rows_recomputed,
            "watermark": format_timestamp(to_us(self.watermark)) if self.watermark else "",
            "watermark_lag_seconds": (
                round(self.watermark_lag_seconds, 3)
                if self.watermark_lag_seconds is not None
                else None
            ),
            "idle_partitions": ",".join(str(p) for p in self.idle_partitions),
            "position": {str(p): o for p, o in sorted(self.position.items())},
            "snapshot_id": str(self.snapshot_id or ""),
            "conflicts": self.conflicts,
            "seconds": round(self.seconds, 3),
        }


def run_silver_pass(
    settings: Settings,
    stream: StreamSpec,
    window: str,
    *,
    catalog: Catalog | None = None,
    now: datetime | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    hook: Hook = lambda _stage: None,
    max_attempts: int = 12,
) -> SilverReport:
    """Run one silver pass of `stream.windows[window]` and return its report.

    `now` (default: the wall clock) decides which partitions are idle and the watermark
    lag. `hook` is called with "computed" (before the commit) and "committed" (after it,
    before the late events are appended) — seams for observing and fault tests. Raises
    ConfigError for a declaration that does not fit the tables (naming stream, window and
    field), CommitConflictError after `max_attempts` lost races.
    """
    if window not in stream.windows:
        raise ConfigError(f"stream {stream.name!r} declares no window {window!r}")
    started = time.monotonic()
    now_us = to_us(now or datetime.now(UTC))
    catalog = catalog if catalog is not None else load_catalog(settings)
    identifier = silver_table_name(stream, window)
    report = SilverReport(stream.name, window, identifier)
    bronze = table_or_none(catalog, stream.table)
    if bronze is None:
        log(f"{stream.table} does not exist yet: nothing to window")
        report.seconds = time.monotonic() - started
        return report
    spec = stream.windows[window]
    lookup = read_lookup(catalog, spec.join.table, spec.join.on) if spec.join else None
    plan = WindowPlan.build(
        stream,
        window,
        polars_schema(bronze),
        lookup.rows.schema if lookup is not None else None,
    )
    silver = ensure_silver_table(catalog, identifier, plan)
    ensure_late_table(catalog)
    for attempt in range(1, max_attempts + 1):
        report.attempts = attempt
        if attempt > 1:
            silver = retry_locked(lambda: catalog.load_table(identifier))
            bronze = retry_locked(lambda: catalog.load_table(stream.table))
        state = SilverState.from_properties(silver.properties)
        if state.declaration and state.declaration != plan.fingerprint:
            raise ConfigError(
                f"stream {stream.name!r}, window {window!r}: {identifier} was computed from "
                f"another declaration ({state.declaration}); drop the table or name the "
                "changed window differently"
            )
        _flush(catalog, stream, window, state)
        computed = _compute(plan, stream, bronze, silver, state, lookup, now_us, report)
        if computed is None:
            _report_state(report, state, now_us, stream)
            log(f"{identifier}: nothing new (position {state.position})")
            break
        new_state, replacement = computed
        hook("computed")
        summary = {COMMIT_ID: str(uuid.uuid4()), "lakehouse.stream": stream.name}
        try:
            latest = commit_replacement(silver, replacement, new_state.to_properties(), summary)
        except CommitFailedException as exc:
            report.conflicts += 1
            log(f"{identifier}: another commit came first ({exc}); starting again")
            backoff(attempt)
            continue
        snapshot = latest.current_snapshot()
        report.snapshot_id = snapshot.snapshot_id if snapshot else None
        hook("committed")
        _flush(catalog, stream, window, new_state)
        break
    else:
        raise CommitConflictError(f"{identifier}: no commit after {max_attempts} attempts")
    report.seconds = time.monotonic() - started
    log(
        f"{identifier}: {report.rows_read} new rows, {report.rows_emitted} rows emitted "
        f"({report.corrections} corrections), {report.late_events} late, watermark "
        f"{report.watermark.isoformat() if report.watermark else 'none'}"
    )
    return report


def _flush(catalog: Catalog, stream: StreamSpec, window: str, state: SilverState) -> None:
    if state.outbox is not None and state.outbox.num_rows:
        flush_late_events(catalog, stream.name, window, state.late_seq, state.outbox)


def _compute(
    plan: WindowPlan,
    stream: StreamSpec,
    bronze: Table,
    silver: Table,
    state: SilverState,
    lookup: Lookup | None,
    now_us: int,
    report: SilverReport,
) -> tuple[SilverState, Any] | None:
    """The new state and the rows to commit; None when there is nothing to commit."""
    spec = plan.spec
    size = plan.shape.size_us
    columns = (*KAFKA_COLUMNS, *plan.bronze_columns)
    fresh = read_rows(bronze, new_rows_filter(state.position), columns)
    position = _next_position(state.position, committed_offsets(bronze, stream.topic), fresh)
    fresh = plan.with_time(fresh).with_columns(pl.col(KAFKA_TS).dt.epoch("us").alias(KAFKA_US))
    timeless = fresh.filter(pl.col(T).is_null())
    fresh = fresh.filter(pl.col(T).is_not_null()).with_columns(
        future_expr(pl.col(T), pl.col(KAFKA_US), stream.watermark).alias(FUTURE)
    )
    stats = partition_stats(fresh, PARTITION, T, KAFKA_US, FUTURE)
    watermark = advance(state.watermark, stats, now_us, stream.watermark)
    wm_prev, wm_new = state.watermark.watermark_us, watermark.watermark_us

    enriched, unmatched = plan.enrich(fresh, lookup.rows if lookup else None)
    kept = plan.keep(enriched)
    rule = LateRule(plan.shape, spec.allowed_lateness_us, wm_prev)
    kept = kept.with_columns(rule.columns(pl.col(T)))
    late = kept.filter(pl.col("late"))
    on_time = kept.filter(~pl.col("late"))

    closing = wm_new is not None and (wm_prev is None or wm_new > wm_prev)
    intervals: list[tuple[int | None, int]] = []
    if closing:
        assert wm_new is not None
        intervals.append((None if wm_prev is None else wm_prev - size, wm_new))
    corrections = (
        late.select(rule.correctable_starts_expr(pl.col(T)).alias(WS), *plan.key_columns)
        .explode(WS)
        .drop_nulls(WS)
        .unique()
    )
    opened = pl.DataFrame(schema={WS: pl.Int64, **{k: kept.schema[k] for k in plan.key_columns}})
    if spec.emit == "updates":
        touched = plan.touched(on_time)
        opened = touched if wm_new is None else touched.filter(pl.col(WS) + size > wm_new)
    for frame in (corrections, opened):
        intervals.extend((s, s + size) for s in frame.get_column(WS).unique().to_list())
    if fresh.height == 0 and timeless.height == 0 and not closing and position == state.position:
        return None

    old = read_rows(
        bronze, old_rows_filter(state.position, plan.event_time, _merged(intervals)), columns
    )
    old_enriched, _ = plan.enrich(
        plan.with_time(old).filter(pl.col(T).is_not_null()), lookup.rows if lookup else None
    )
    old_kept = plan.keep(old_enriched)
    needed = [T, *_aggregation_columns(plan)]
    rows = pl.concat(
        [old_kept.select(needed), _within(kept, intervals).select(needed)], how="vertical_relaxed"
    )
    windows = plan.aggregate(rows)
    keys = [WS, *plan.key_columns]
    emit = []
    if closing:
        assert wm_new is not None
        ends = pl.col(WS) + size
        closed = windows.filter(
            (ends <= wm_new) & (ends > wm_prev if wm_prev is not None else pl.lit(True))
        )
        emit.append(
            closed.with_columns(pl.lit(True).alias("final"), pl.lit("close").alias("__why"))
        )
    fixed = windows.join(corrections, on=keys, how="semi", nulls_equal=True)
    emit.append(fixed.with_columns(pl.lit(True).alias("final"), pl.lit("correct").alias("__why")))
    if spec.emit == "updates":
        grown = windows.join(opened, on=keys, how="semi", nulls_equal=True)
        emit.append(
            grown.with_columns(pl.lit(False).alias("final"), pl.lit("update").alias("__why"))
        )
    emitted = pl.concat(emit, how="vertical_relaxed")
    now_expr = pl.lit(now_us).cast(pl.Int64).pipe(pl.from_epoch, "us").dt.replace_time_zone("UTC")
    replacement = plan_replacement(silver, plan, emitted.drop("__why"), now_expr)

    late_rows = _late_rows(plan, late, wm_prev, now_us)
    seq = state.late_seq + (1 if late_rows.num_rows else 0)
    new_state = SilverState(
        position=position,
        watermark=watermark,
        late_seq=seq,
        outbox=late_rows if late_rows.num_rows else None,
        declaration=plan.fingerprint,
        lookup_snapshot=lookup.snapshot_id if lookup else None,
    )
    report.rows_read = fresh.height + timeless.height
    report.no_event_time = timeless.height
    report.future_events = int(fresh.get_column(FUTURE).sum())
    report.unmatched_lookup = unmatched
    report.lookup_duplicate_keys = lookup.duplicate_keys if lookup else 0
    report.filtered = enriched.height - kept.height
    report.on_time = on_time.height
    report.late_events = late.height
    report.late_corrected = int(late.get_column("corrected").sum())
    report.rows_emitted = emitted.height
    report.windows_closed = int((emitted.get_column("__why") == "close").sum())
    report.corrections = int((emitted.get_column("__why") == "correct").sum())
    report.bronze_rows_recomputed = old.height
    report.watermark_before = to_datetime(wm_prev)
    report.watermark = to_datetime(wm_new)
    report.watermark_lag_seconds = (now_us - wm_new) / 1e6 if wm_new is not None else None
    report.idle_partitions = idle_partitions(watermark.partitions, now_us, stream.watermark)
    report.position = position
    return new_state, replacement


def _report_state(
    report: SilverReport, state: SilverState, now_us: int, stream: StreamSpec
) -> None:
    """A pass with nothing to commit reports the state in force."""
    wm = state.watermark.watermark_us
    report.watermark = report.watermark_before = to_datetime(wm)
    report.watermark_lag_seconds = (now_us - wm) / 1e6 if wm is not None else None
    report.idle_partitions = idle_partitions(state.watermark.partitions, now_us, stream.watermark)
    report.position = dict(state.position)


def _next_position(
    position: dict[int, int], committed: dict[int, int], fresh: pl.DataFrame
) -> dict[int, int]:
    """Past every row read: bronze's committed offsets (which also cover dead letters), or
    the highest offset read + 1 for a table that keeps none."""
    after = dict(position)
    for p, o in committed.items():
        after[p] = max(after.get(p, o), o)
    if fresh.height:
        highest = fresh.group_by(PARTITION).agg(pl.col(OFFSET).max()).iter_rows()
        for p, o in highest:
            after[int(p)] = max(after.get(int(p), 0), int(o) + 1)
    return after


def _merged(intervals: list[tuple[int | None, int]]) -> list[tuple[int | None, int]]:
    """The intervals merged (`None`: unbounded below)."""
    floor = min([-(2**62), *(lo for lo, _ in intervals if lo is not None)])
    merged = merge_intervals([(floor if lo is None else lo, hi) for lo, hi in intervals])
    return [(None if lo == floor else lo, hi) for lo, hi in merged]


def _within(rows: pl.DataFrame, intervals: list[tuple[int | None, int]]) -> pl.DataFrame:
    if not intervals:
        return rows.clear()
    condition = pl.lit(False)
    for lo, hi in intervals:
        term = pl.col(T) < hi if lo is None else (pl.col(T) >= lo) & (pl.col(T) < hi)
        condition = condition | term
    return rows.filter(condition)


def _aggregation_columns(plan: WindowPlan) -> list[str]:
    """The columns the group keys and aggregates read (after enrichment)."""
    columns = list(plan.key_columns)
    for expr in plan.aggregates.values():
        columns.extend(c for c in expr.meta.root_names() if c not in columns)
    return columns


def _late_rows(plan: WindowPlan, late: pl.DataFrame, wm_prev: int | None, now_us: int) -> pa.Table:
    """The rows `silver.late_events` gets for this pass's late events."""
    if late.height == 0:
        return LATE_EVENTS_SCHEMA.empty_table()
    frame = late.select(
        pl.lit(plan.stream).alias("stream"),
        pl.lit(plan.window).alias("window"),
        pl.col(PARTITION).cast(pl.Int32).alias("kafka_partition"),
        pl.col(OFFSET).cast(pl.Int64).alias("kafka_offset"),
        pl.col(plan.event_time).cast(UTC_US).alias("event_time"),
        pl.lit(wm_prev).pipe(pl.from_epoch, "us").dt.replace_time_zone("UTC").alias("watermark"),
        pl.col("lateness_seconds"),
        pl.col("corrected"),
        pl.col("windows_corrected"),
        pl.lit(now_us).pipe(pl.from_epoch, "us").dt.replace_time_zone("UTC").alias("recorded_at"),
    ).sort("kafka_partition", "kafka_offset")
    return frame.to_arrow().cast(LATE_EVENTS_SCHEMA)


__all__ = ["SilverReport", "run_silver_pass", "silver_table_name"]
