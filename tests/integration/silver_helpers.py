"""Helpers for the silver tests: a bronze table written through the real commit protocol
without Kafka (fast enough for a property test), and a brute-force reference model of the
windows, written as plainly as possible and independently of `lakehouse.windowing`."""

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog

from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import commit_batch

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")
CLICK_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("event_time", _TS),
        pa.field("user_id", pa.string()),
        pa.field("page", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("action", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("_kafka_topic", pa.string()),
        pa.field("_kafka_partition", pa.int32()),
        pa.field("_kafka_offset", pa.int64()),
        pa.field("_kafka_timestamp", _TS),
        pa.field("_kafka_key", pa.binary()),
        pa.field("_ingested_at", _TS),
    ]
)


def at(seconds: float) -> datetime:
    """A moment `seconds` after 2026-01-01T00:00:00Z."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Click:
    """One bronze row: where it sits in Kafka, when it happened, when it arrived."""

    partition: int
    event_time: datetime
    arrival: datetime  # the Kafka timestamp
    page: str = "/"
    user_id: str = "u1"
    product_id: str | None = None
    action: str = "view"
    price: float | None = None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Bronze:
    """A bronze table fed batch by batch through `commit_batch`, offsets assigned in order."""

    def __init__(self, catalog: Catalog, spec: StreamSpec) -> None:
        self.catalog = catalog
        self.spec = spec
        self.next: dict[int, int] = defaultdict(int)
        self.rows: list[tuple[int, int, Click]] = []  # (partition, offset, click)
        ensure_table(catalog, spec.table, CLICK_SCHEMA, spec.partition_by)

    def append(self, clicks: Sequence[Click]) -> list[tuple[int, int, Click]]:
        """Commit the clicks as one bronze batch; their (partition, offset, click)."""
        placed = []
        start = dict(self.next)
        for click in clicks:
            offset = self.next[click.partition]
            self.next[click.partition] += 1
            placed.append((click.partition, offset, click))
        rows = pa.Table.from_pylist(
            [
                {
                    "event_id": c.event_id,
                    "event_time": c.event_time,
                    "user_id": c.user_id,
                    "page": c.page,
                    "product_id": c.product_id,
                    "action": c.action,
                    "price": c.price,
                    "_kafka_topic": self.spec.topic,
                    "_kafka_partition": p,
                    "_kafka_offset": o,
                    "_kafka_timestamp": c.arrival,
                    "_kafka_key": c.user_id.encode(),
                    "_ingested_at": c.arrival,
                }
                for p, o, c in placed
            ],
            schema=CLICK_SCHEMA,
        )
        parts = {p for p, _, _ in placed}
        commit_batch(
            self.catalog,
            self.spec.table,
            self.spec.topic,
            rows,
            {p: start.get(p, 0) for p in parts},
            {p: self.next[p] for p in parts},
        )
        self.rows.extend(placed)
        return placed


def click_spec(windows: dict[str, Any], **watermark: str) -> StreamSpec:
    """A clicks stream on a fresh table with these window declarations."""
    suffix = uuid.uuid4().hex[:8]
    return StreamSpec(
        name=f"clicks_{suffix}",
        topic=f"clicks-{suffix}",
        event_time="event_time",
        partition_by=("day(event_time)",),
        watermark={"max_out_of_orderness": "10s", "idle_partition_timeout": "60s", **watermark},
        windows=windows,
    )


# The reference model -------------------------------------------------------------------


@dataclass
class Model:
    """What silver must hold after a sequence of passes, computed by brute force.

    Each pass: the watermark is recomputed from every row seen so far; a row is late when a
    window holding it had ended at or before the previous watermark; closed windows that
    still take corrections are recomputed from every row seen so far.
    """

    size: int  # microseconds
    every: int
    lateness: int
    out_of_orderness: int
    idle: int
    skew: int
    keep: Callable[[Click], bool]
    key: Callable[[Click], tuple[Any, ...]]
    values: Callable[[list[Click]], dict[str, Any]]
    updates: bool = False  # emit: updates (open windows written as they grow)
    finals: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    seen: list[tuple[int, int, Click]] = field(default_factory=list)
    watermark: int | None = None
    maxima: dict[int, int] = field(default_factory=dict)
    last_arrival: dict[int, int] = field(default_factory=dict)
    emitted: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    revisions: dict[tuple[Any, ...], int] = field(default_factory=dict)
    late: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    future: int = 0

    def windows_of(self, t: int) -> list[int]:
        """Starts of the windows holding t, found by walking every multiple of `every`."""
        start = (t // self.every) * self.every
        starts = []
        while start + self.size > t:
            starts.append(start)
            start -= self.every
        return sorted(starts)

    def run_pass(self, batch: Iterable[tuple[int, int, Click]], now: int) -> None:
        batch = list(batch)
        before = self.watermark
        for p, _, c in batch:
            t, k = us(c.event_time), us(c.arrival)
            self.last_arrival[p] = max(self.last_arrival.get(p, k), k)
            if t > k + self.skew:
                self.future += 1
                continue
            self.maxima[p] = max(self.maxima.get(p, t), t)
        active = [m for p, m in self.maxima.items() if now - self.last_arrival[p] < self.idle]
        if self.maxima:
            candidate = (
                min(active) if active else max(self.maxima.values())
            ) - self.out_of_orderness
            self.watermark = candidate if before is None else max(before, candidate)
        to_fix: set[tuple[Any, ...]] = set()
        grown: set[tuple[Any, ...]] = set()
        for p, o, c in batch:
            if not self.keep(c):
                continue
            t = us(c.event_time)
            closed = [
                s for s in self.windows_of(t) if before is not None and s + self.size <= before
            ]
            if not closed:
                grown.update((s, *self.key(c)) for s in self.windows_of(t))
                continue
            fixable = [s for s in closed if before < s + self.size + self.lateness]  # type: ignore[operator]
            self.late[(p, o)] = {
                "watermark": before,
                "corrected": len(fixable) == len(closed),
                "windows_corrected": len(fixable),
            }
            to_fix.update((s, *self.key(c)) for s in fixable)
        self.seen.extend(batch)
        groups: dict[tuple[Any, ...], list[Click]] = defaultdict(list)
        for _, _, c in self.seen:
            if self.keep(c):
                for s in self.windows_of(us(c.event_time)):
                    groups[(s, *self.key(c))].append(c)
        wm = self.watermark
        for window, clicks in groups.items():
            end = window[0] + self.size
            closing = wm is not None and end <= wm and (before is None or end > before)
            still_open = wm is None or end > wm
            growing = self.updates and still_open and window in grown
            if closing or window in to_fix or growing:
                self.emitted[window] = self.values(clicks)
                self.revisions[window] = self.revisions.get(window, 0) + 1
                self.finals[window] = not still_open


def silver_frame(catalog: Catalog, spec: StreamSpec, window: str) -> Any:
    """Every current row of the silver table, as a Polars frame."""
    import polars as pl

    from lakehouse.windowing.silver import silver_table_name

    return pl.from_arrow(catalog.load_table(silver_table_name(spec, window)).scan().to_arrow())


def late_frame(catalog: Catalog, spec: StreamSpec, window: str) -> Any:
    """This window's rows of `silver.late_events`."""
    import polars as pl

    from lakehouse.windowing.store import LATE_EVENTS_TABLE

    late = pl.from_arrow(catalog.load_table(LATE_EVENTS_TABLE).scan().to_arrow())
    assert isinstance(late, pl.DataFrame)
    return late.filter((pl.col("stream") == spec.name) & (pl.col("window") == window))


def assert_silver_equals_model(
    catalog: Catalog, spec: StreamSpec, window: str, model: Model, key_columns: Sequence[str]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Silver holds exactly the model's windows (values, revision, final), one row each, and
    `silver.late_events` exactly the model's late events, each once. Returns silver's rows."""
    import pytest

    silver = silver_frame(catalog, spec, window)
    got = {
        (us(row["window_start"]), *(row[k] for k in key_columns)): row for row in silver.to_dicts()
    }
    assert len(got) == silver.height, "one current row per window and key"
    assert set(got) == set(model.emitted)
    for window_key, values in model.emitted.items():
        row = got[window_key]
        assert row["final"] is model.finals[window_key], window_key
        assert row["revision"] == model.revisions[window_key], window_key
        assert row["window_end"] - row["window_start"] == timedelta(microseconds=model.size)
        for column, expected in values.items():
            assert row[column] == pytest.approx(expected), (window_key, column)
    late = late_frame(catalog, spec, window)
    recorded = {(r["kafka_partition"], r["kafka_offset"]): r for r in late.to_dicts()}
    assert len(recorded) == late.height, "each late event recorded once"
    assert set(recorded) == set(model.late)
    for where, expected in model.late.items():
        row = recorded[where]
        assert us(row["watermark"]) == expected["watermark"]
        assert row["corrected"] == expected["corrected"]
        assert row["windows_corrected"] == expected["windows_corrected"]
    return got


def model_of(
    spec: StreamSpec,
    window: str,
    keep: Callable[[Click], bool],
    key: Callable[[Click], tuple[Any, ...]],
    values: Callable[[list[Click]], dict[str, Any]],
) -> Model:
    """The model of a window declaration of `spec`, with its `where`, group key and
    aggregates written as Python."""
    declared = spec.windows[window]
    return Model(
        updates=declared.emit == "updates",
        size=declared.size_us,
        every=declared.every_us,
        lateness=declared.allowed_lateness_us,
        out_of_orderness=spec.watermark.out_of_orderness_us,
        idle=spec.watermark.idle_timeout_us,
        skew=spec.watermark.future_skew_us,
        keep=keep,
        key=key,
        values=values,
    )


def count_model(spec: StreamSpec, window: str) -> Model:
    """The model of a `count(*)` per page window of `spec` (no where, no join)."""
    return model_of(spec, window, lambda c: True, lambda c: (c.page,), lambda cs: {"n": len(cs)})
