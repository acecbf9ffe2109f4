"""One window declaration compiled against real schemas, and its computation in Polars.

`WindowPlan.build` checks what needs the stream's columns (group keys, the columns `where`
and the aggregates read, the join key and the lookup's columns) and fails with a
`ConfigError` naming stream, window and field. The computation is pure (frames in, frames
out): enrich (left join with the lookup), filter (`where`), then one row per (event, window
holding it) and a `group_by` over (window start, group keys). Exploding events into their
windows is exact for every aggregate, `count(distinct ...)` included, and produces windows
that start before a group's first event, which `group_by_dynamic` does not.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import polars as pl

from lakehouse.config import StreamSpec
from lakehouse.errors import ConfigError
from lakehouse.windowing.declarations import WindowSpec, sql_expression
from lakehouse.windowing.ranges import WindowShape, window_starts

#: Internal column names (never clash with a stream's own).
T = "__t"  # event time, Int64 microseconds since the epoch
WS = "__ws"  # window start, Int64 microseconds
PARTITION = "_kafka_partition"
OFFSET = "_kafka_offset"
KAFKA_TS = "_kafka_timestamp"
KAFKA_COLUMNS = (PARTITION, OFFSET, KAFKA_TS)
UTC_US = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class WindowPlan:
    """A window declaration ready to run against one bronze schema (and lookup schema)."""

    stream: str
    window: str
    spec: WindowSpec
    event_time: str
    shape: WindowShape
    where: pl.Expr | None
    aggregates: dict[str, pl.Expr]
    bronze_columns: tuple[str, ...]  # read from bronze besides the Kafka columns
    lookup_columns: tuple[str, ...]  # the join key first, then the columns it adds
    key_columns: tuple[str, ...]
    output_schema: pl.Schema  # the silver table's columns

    @classmethod
    def build(
        cls,
        stream: StreamSpec,
        window: str,
        bronze_schema: pl.Schema,
        lookup_schema: pl.Schema | None = None,
    ) -> "WindowPlan":
        """Compile `stream.windows[window]`; ConfigError naming stream, window and field."""
        spec = stream.windows[window]
        where = sql_expression(spec.where) if spec.where else None
        aggregates = {name: sql_expression(text) for name, text in spec.aggregate.items()}
        fail = _Failure(stream.name, window)
        if stream.event_time not in bronze_schema:
            fail("event_time", f"column {stream.event_time!r} is not in {stream.table}")
        if not isinstance(bronze_schema[stream.event_time], pl.Datetime):
            fail(
                "event_time",
                f"{stream.event_time!r} is {bronze_schema[stream.event_time]}, not a timestamp",
            )
        lookup_columns: tuple[str, ...] = ()
        if spec.join is not None:
            if lookup_schema is None:
                fail("join.table", f"lookup table {spec.join.table} does not exist")
            if spec.join.on not in bronze_schema:
                fail("join.on", f"column {spec.join.on!r} is not in {stream.table}")
            if spec.join.on not in lookup_schema:
                fail("join.on", f"column {spec.join.on!r} is not in {spec.join.table}")
            added = spec.join.columns or tuple(c for c in lookup_schema if c != spec.join.on)
            for column in added:
                if column not in lookup_schema:
                    fail("join.columns", f"column {column!r} is not in {spec.join.table}")
                if column in bronze_schema:
                    fail(
                        "join.columns",
                        f"{spec.join.table} column {column!r} is also a column of "
                        f"{stream.table}; list the lookup columns to add in join.columns",
                    )
            lookup_columns = (spec.join.on, *added)
        available = dict(bronze_schema)
        if lookup_schema is not None:
            available.update({c: lookup_schema[c] for c in lookup_columns[1:]})
        for key in spec.group_by:
            if key not in available:
                fail("group_by", f"column {key!r} does not exist")
        if where is not None:
            for column in where.meta.root_names():
                if column not in available:
                    fail("where", f"column {column!r} does not exist")
        for name, expr in aggregates.items():
            for column in expr.meta.root_names():
                if column not in available:
                    fail(f"aggregate.{name}", f"column {column!r} does not exist")
        output = _output_schema(spec, where, aggregates, available, fail)
        bronze_columns = {stream.event_time, *spec.group_by}
        if where is not None:
            bronze_columns.update(where.meta.root_names())
        for expr in aggregates.values():
            bronze_columns.update(expr.meta.root_names())
        if spec.join is not None:
            bronze_columns.add(spec.join.on)
        bronze_columns &= set(bronze_schema)
        return cls(
            stream=stream.name,
            window=window,
            spec=spec,
            event_time=stream.event_time,
            shape=WindowShape(spec.size_us, spec.every_us),
            where=where,
            aggregates=aggregates,
            bronze_columns=tuple(sorted(bronze_columns - set(KAFKA_COLUMNS))),
            lookup_columns=lookup_columns,
            key_columns=tuple(spec.group_by),
            output_schema=output,
        )

    @property
    def fingerprint(self) -> str:
        """What the silver rows depend on; a table built for another declaration is refused."""
        spec = self.spec
        return json.dumps(
            {
                "event_time": self.event_time,
                "size_us": self.shape.size_us,
                "every_us": self.shape.every_us,
                "where": spec.where,
                "group_by": list(spec.group_by),
                "aggregate": spec.aggregate,
                "join": spec.join.model_dump(mode="json") if spec.join else None,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    def with_time(self, rows: pl.DataFrame) -> pl.DataFrame:
        """`rows` with the event time as Int64 microseconds in `__t`."""
        return rows.with_columns(pl.col(self.event_time).dt.epoch("us").alias(T))

    def enrich(self, rows: pl.DataFrame, lookup: pl.DataFrame | None) -> tuple[pl.DataFrame, int]:
        """Left join with the lookup (one row per key); also how many rows had a non-null key
        the lookup does not hold (they keep their event with nulls)."""
        if self.spec.join is None or lookup is None:
            return rows, 0
        on = self.spec.join.on
        joined = rows.join(lookup, on=on, how="left", maintain_order="left")
        marker = self.lookup_columns[1] if len(self.lookup_columns) > 1 else None
        if marker is None:
            return joined, 0
        known = set(lookup.get_column(on).drop_nulls().to_list())
        keys = rows.get_column(on)
        unmatched = (
            int((keys.is_not_null() & ~keys.is_in(list(known))).sum())
            if known
            else int(keys.is_not_null().sum())
        )
        return joined, unmatched

    def keep(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The rows `where` keeps (a null verdict drops the row, as SQL does)."""
        if self.where is None:
            return rows
        return rows.filter(self.where.fill_null(False))

    def aggregate(self, rows: pl.DataFrame, starts: Sequence[int] | None = None) -> pl.DataFrame:
        """One row per (window start, group keys) of the windows in `starts` (all if None):
        `__ws`, the keys, the aggregates."""
        frame = self.assign(rows)
        if starts is not None:
            frame = frame.filter(pl.col(WS).is_in(pl.Series(list(starts), dtype=pl.Int64)))
        return self.group(frame)

    def assign(self, rows: pl.DataFrame) -> pl.LazyFrame:
        """One row per (row, window holding it), the window start in `__ws`."""
        return window_starts(rows.lazy(), self.shape, T, WS)

    def group(self, assigned: pl.LazyFrame) -> pl.DataFrame:
        """The aggregates per (window start, group keys) of rows from `assign`."""
        aggs = [expr.alias(name) for name, expr in self.aggregates.items()]
        return assigned.group_by([WS, *self.key_columns]).agg(aggs).collect()

    def touched(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The distinct (window start, group keys) the rows fall in."""
        frame = window_starts(rows.lazy().select(T, *self.key_columns), self.shape, T, WS)
        return frame.select(WS, *self.key_columns).unique().collect()


class _Failure:
    """Raises the ConfigError of one declaration, naming stream, window and field."""

    def __init__(self, stream: str, window: str) -> None:
        self.where = f"stream {stream!r}, window {window!r}"

    def __call__(self, field: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where}, field '{field}': {message}")


def _output_schema(
    spec: WindowSpec,
    where: pl.Expr | None,
    aggregates: dict[str, pl.Expr],
    available: dict[str, pl.DataType],
    fail: _Failure,
) -> pl.Schema:
    """The silver table's columns, from the aggregates evaluated on an empty frame."""
    empty = pl.LazyFrame(schema={**available, WS: pl.Int64})
    if where is not None:
        try:
            empty.filter(where).collect_schema()
        except Exception as exc:
            fail("where", f"{spec.where!r} does not evaluate on these columns: {exc}")
    schema: dict[str, pl.DataType] = {"window_start": UTC_US, "window_end": UTC_US}
    schema.update({key: available[key] for key in spec.group_by})
    for name, expr in aggregates.items():
        try:
            dtype = (
                empty.group_by([WS, *spec.group_by]).agg(expr.alias(name)).collect_schema()[name]
            )
        except Exception as exc:
            fail(f"aggregate.{name}", f"{spec.aggregate[name]!r} does not evaluate: {exc}")
        if isinstance(dtype, pl.List):
            fail(f"aggregate.{name}", f"{spec.aggregate[name]!r} is not an aggregate")
        schema[name] = dtype
    schema.update({"revision": pl.Int32(), "final": pl.Boolean(), "updated_at": UTC_US})
    return pl.Schema(schema)
