"""The Iceberg side of a silver pass: bronze reads, the silver commit, the late-events table.

Bronze is read twice per pass at most, both pruned: the rows new since the silver position
(by Kafka partition and offset, which live in the rows), and the older rows of the event-time
ranges whose windows are recomputed. The silver commit replaces whole data files that hold
a window being re-emitted (their other rows are copied), adds the new rows, and sets the
state properties, in one snapshot that is a compare-and-set. Late-event rows travel in the
silver commit (its outbox) and are then appended to `silver.late_events`, which records per
window the last outbox it holds, so each is recorded once (docs/windows.md, "Exactly once").
"""

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import polars as pl
import pyarrow as pa
from pyiceberg import expressions as ex
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysFalse, AlwaysTrue, And, BooleanExpression, Or
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.catalog import ensure_table, retry_locked, table_or_none
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.data_files import write_data_files
from lakehouse.iceberg.evolution import evolve_schema, fits_schema
from lakehouse.windowing.compute import OFFSET, PARTITION, WS, WindowPlan
from lakehouse.windowing.declarations import LATE_EVENTS_TABLE

log = logging.getLogger(__name__)

LATE_SEQ_PREFIX = "lakehouse.late-seq."
_TS = pa.timestamp("us", tz="UTC")
LATE_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("stream", pa.string()),
        pa.field("window", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("event_time", _TS),
        pa.field("watermark", _TS),
        pa.field("lateness_seconds", pa.float64()),
        pa.field("corrected", pa.bool_()),
        pa.field("windows_corrected", pa.int32()),
        pa.field("recorded_at", _TS),
    ]
)
SILVER_PARTITIONING = ("day(window_start)",)


# Bronze ---------------------------------------------------------------------------------

# pyiceberg's predicates are pydantic models whose generated signatures mypy reads instead of
# their own `__init__(term, literal)`: built through these, typed once.
_Predicate = Callable[[str, Any], BooleanExpression]
EqualTo = cast(_Predicate, ex.EqualTo)
GreaterThanOrEqual = cast(_Predicate, ex.GreaterThanOrEqual)
LessThan = cast(_Predicate, ex.LessThan)
In = cast(_Predicate, ex.In)
NotIn = cast(_Predicate, ex.NotIn)


def new_rows_filter(position: Mapping[int, int]) -> BooleanExpression:
    """Bronze rows at or past the position (every row of a partition it does not name)."""
    if not position:
        return AlwaysTrue()
    terms: list[BooleanExpression] = [
        And(EqualTo(PARTITION, p), GreaterThanOrEqual(OFFSET, o)) for p, o in position.items()
    ]
    terms.append(NotIn(PARTITION, list(position)))
    return Or(*terms) if len(terms) > 1 else terms[0]


def old_rows_filter(
    position: Mapping[int, int], event_time: str, intervals: Sequence[tuple[int | None, int]]
) -> BooleanExpression:
    """Bronze rows before the position whose event time is in one of the `[lo, hi)`
    intervals (microseconds; `lo=None` is unbounded)."""
    if not position or not intervals:
        return AlwaysFalse()
    before = [And(EqualTo(PARTITION, p), LessThan(OFFSET, o)) for p, o in position.items()]
    ranges = [
        LessThan(event_time, hi)
        if lo is None
        else And(GreaterThanOrEqual(event_time, lo), LessThan(event_time, hi))
        for lo, hi in intervals
    ]
    return And(_any(before), _any(ranges))


def _any(terms: Sequence[BooleanExpression]) -> BooleanExpression:
    return Or(*terms) if len(terms) > 1 else terms[0]


def read_rows(table: Table, row_filter: BooleanExpression, columns: Sequence[str]) -> pl.DataFrame:
    """The table's rows matching `row_filter`, those columns only, as a Polars frame."""
    if isinstance(row_filter, AlwaysFalse):
        return pl.from_arrow(table.schema().select(*columns).as_arrow().empty_table())  # type: ignore[return-value]
    scan = table.scan(row_filter=row_filter, selected_fields=tuple(columns))
    return pl.from_arrow(scan.to_arrow())  # type: ignore[return-value]


def polars_schema(table: Table) -> pl.Schema:
    """The table's columns as a Polars schema."""
    return pl.from_arrow(table.schema().as_arrow().empty_table()).schema  # type: ignore[union-attr]


# Lookup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """A lookup table read for one pass: one row per key."""

    rows: pl.DataFrame
    snapshot_id: int | None
    duplicate_keys: int


def read_lookup(catalog: Catalog, identifier: str, key: str) -> Lookup | None:
    """The lookup table (None if it does not exist), one row per key: duplicates of a key
    keep the first row in key order and are counted."""
    table = table_or_none(catalog, identifier)
    if table is None:
        return None
    snapshot = table.current_snapshot()
    rows: pl.DataFrame = pl.from_arrow(table.scan().to_arrow())  # type: ignore[assignment]
    if key not in rows.columns:
        return Lookup(rows, snapshot.snapshot_id if snapshot else None, 0)
    unique = rows.unique(subset=[key], keep="first", maintain_order=True)
    return Lookup(unique, snapshot.snapshot_id if snapshot else None, rows.height - unique.height)


# Silver ---------------------------------------------------------------------------------


def silver_arrow_schema(plan: WindowPlan) -> pa.Schema:
    """The silver table's Arrow schema."""
    return pl.DataFrame(schema=plan.output_schema).to_arrow().schema


def ensure_silver_table(catalog: Catalog, identifier: str, plan: WindowPlan) -> Table:
    """The silver table, made on first use (partitioned by day of window start)."""
    return ensure_table(catalog, identifier, silver_arrow_schema(plan), SILVER_PARTITIONING)


def ensure_late_table(catalog: Catalog) -> Table:
    """`silver.late_events`, made on first use (partitioned by stream)."""
    return ensure_table(catalog, LATE_EVENTS_TABLE, LATE_EVENTS_SCHEMA, ("stream",))


@dataclass(frozen=True)
class Replacement:
    """What a silver commit writes: the rows it emits with their revisions, and the files."""

    emitted: pl.DataFrame  # silver columns, revisions set
    previous: pl.DataFrame  # the rows they replace (silver columns)
    deleted: tuple[DataFile, ...]
    kept_rows: int


def plan_replacement(
    table: Table, plan: WindowPlan, emitted: pl.DataFrame, now: pl.Expr
) -> Replacement:
    """Find the current rows of the windows in `emitted` (`__ws`, keys, aggregates, `final`)
    and number the new rows: revision = previous + 1, or 1 for a window never written.
    The data files holding a previous row are replaced whole (their other rows kept)."""
    keys = [WS, *plan.key_columns]
    names = list(plan.output_schema)
    deleted: list[DataFile] = []
    kept: list[pl.DataFrame] = []
    previous: list[pl.DataFrame] = []
    if emitted.height and table.current_snapshot() is not None:
        starts = emitted.get_column(WS).unique().to_list()
        wanted = emitted.select(keys).unique()
        tasks = table.scan(row_filter=In("window_start", starts)).plan_files()
        scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
        for task in tasks:
            rows = _with_ws(pl.from_arrow(scan.to_table([task])))  # type: ignore[arg-type]
            hit = rows.join(wanted, on=keys, how="semi", nulls_equal=True)
            if hit.height == 0:
                continue
            deleted.append(task.file)
            previous.append(hit)
            kept.append(rows.join(wanted, on=keys, how="anti", nulls_equal=True).select(names))
    before = pl.concat(previous) if previous else None
    numbered = emitted
    if before is not None:
        old = before.select(*keys, pl.col("revision").alias("__previous"))
        numbered = emitted.join(old, on=keys, how="left", nulls_equal=True)
    else:
        numbered = emitted.with_columns(pl.lit(None, pl.Int32).alias("__previous"))
    numbered = numbered.with_columns(
        pl.from_epoch(pl.col(WS), "us").dt.replace_time_zone("UTC").alias("window_start"),
        pl.from_epoch(pl.col(WS) + plan.shape.size_us, "us")
        .dt.replace_time_zone("UTC")
        .alias("window_end"),
        (pl.col("__previous").fill_null(0) + 1).cast(pl.Int32).alias("revision"),
        now.alias("updated_at"),
    ).select(names)
    rows = pl.concat([*kept, numbered], how="vertical_relaxed") if kept else numbered
    return Replacement(
        emitted=rows,
        previous=before.select(names)
        if before is not None
        else pl.DataFrame(schema=plan.output_schema),
        deleted=tuple(deleted),
        kept_rows=sum(k.height for k in kept),
    )


def _with_ws(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(pl.col("window_start").dt.epoch("us").alias(WS))


def commit_replacement(
    table: Table,
    replacement: Replacement,
    properties: Mapping[str, str],
    summary: Mapping[str, str],
) -> Table:
    """One snapshot: the replaced files out, the new rows in, the state properties set.

    A compare-and-set: raises CommitFailedException when another commit came first."""
    tx = cas_transaction(table)
    arrow = replacement.emitted.to_arrow()
    if not fits_schema(table.schema(), arrow.schema):
        evolve_schema(tx, arrow.schema)
    target = tx.table_metadata.schema().as_arrow()
    arrow = arrow.select(target.names).cast(target)
    files = write_data_files(table.io, tx.table_metadata, arrow)
    producer = tx.update_snapshot(snapshot_properties=dict(summary))
    if replacement.deleted:
        with producer.overwrite() as overwrite:
            for data_file in replacement.deleted:
                overwrite.delete_data_file(data_file)
            for data_file in files:
                overwrite.append_data_file(data_file)
    else:  # also with no file at all: the empty snapshot is what asserts the branch head
        with producer.fast_append() as append:
            for data_file in files:
                append.append_data_file(data_file)
    tx.set_properties(dict(properties))
    return tx.commit_transaction()


# Late events ----------------------------------------------------------------------------


def late_seq_key(stream: str, window: str) -> str:
    """The late-events table property holding a window's last recorded outbox number."""
    return f"{LATE_SEQ_PREFIX}{stream}.{window}"


def flush_late_events(
    catalog: Catalog, stream: str, window: str, seq: int, rows: pa.Table, attempts: int = 12
) -> bool:
    """Append outbox `seq` to `silver.late_events` unless it is there already; True if this
    call appended it. Each append sets the window's sequence number in the same commit."""
    key = late_seq_key(stream, window)
    rows = rows.select(LATE_EVENTS_SCHEMA.names).cast(LATE_EVENTS_SCHEMA)
    for attempt in range(1, attempts + 1):
        table = retry_locked(lambda: catalog.load_table(LATE_EVENTS_TABLE))
        if int(table.properties.get(key) or 0) >= seq:
            return False
        tx = cas_transaction(table)
        tx.append(rows)
        tx.set_properties({key: str(seq)})
        try:
            tx.commit_transaction()
            return True
        except CommitFailedException as exc:
            log.info("%s: late-event append lost a race (attempt %d): %s", key, attempt, exc)
            backoff(attempt)
    raise CommitConflictError(
        f"{LATE_EVENTS_TABLE}: no commit of {key}={seq} after {attempts} attempts"
    )


def backoff(attempt: int) -> None:
    """Jittered exponential pause before another attempt (10 ms doubling, at most 0.5 s)."""
    time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
