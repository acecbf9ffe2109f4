"""The watermark of a stream, from the event times seen per Kafka partition.

watermark = min over active partitions of (that partition's max event time)
            - max_out_of_orderness,
never lower than before. A partition is active while its last record (by Kafka timestamp)
is less than `idle_partition_timeout` before `now`; a partition never seen is not active.
When no partition is active the highest max event time of any partition is used, so a quiet
stream still closes the windows its data has passed. An event time more than
`max_future_skew` ahead of its Kafka timestamp does not count toward a partition's max: it
is counted and reported, never allowed to make everything else late (docs/windows.md).
"""

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lakehouse.windowing.declarations import WatermarkSpec


@dataclass(frozen=True)
class PartitionClock:
    """What the watermark needs of one partition."""

    max_event_us: int | None  # highest event time seen that was not from the future
    last_record_us: int  # Kafka timestamp of its newest record


@dataclass(frozen=True)
class WatermarkState:
    """The watermark in force and the per-partition clocks it came from."""

    watermark_us: int | None = None
    partitions: dict[int, PartitionClock] = field(default_factory=dict)

    def to_json(self) -> str:
        """The partition clocks as compact JSON (a table property)."""
        return json.dumps(
            {
                str(p): [c.max_event_us, c.last_record_us]
                for p, c in sorted(self.partitions.items())
            },
            separators=(",", ":"),
        )

    def _sorted(self) -> list[tuple[int, PartitionClock]]:
        return sorted(self.partitions.items())

    @staticmethod
    def partitions_from_json(text: str | None) -> dict[int, PartitionClock]:
        """Inverse of `to_json`."""
        raw: dict[str, Any] = json.loads(text) if text else {}
        return {int(p): PartitionClock(v[0], int(v[1])) for p, v in raw.items()}


@dataclass(frozen=True)
class PartitionStats:
    """What a batch of new rows says about one partition."""

    max_event_us: int | None  # of the rows not from the future
    max_kafka_us: int


def future_expr(event_us: pl.Expr, kafka_us: pl.Expr, spec: WatermarkSpec) -> pl.Expr:
    """True where an event time is more than the allowed skew ahead of its Kafka timestamp."""
    return event_us > kafka_us + spec.future_skew_us


def partition_stats(
    rows: pl.DataFrame, partition: str, event_us: str, kafka_us: str, future: str
) -> dict[int, PartitionStats]:
    """Per partition: the max event time of rows not from the future, the max Kafka time."""
    if rows.height == 0:
        return {}
    grouped = rows.group_by(partition).agg(
        pl.col(event_us).filter(~pl.col(future)).max().alias("max_event"),
        pl.col(kafka_us).max().alias("max_kafka"),
    )
    return {
        int(p): PartitionStats(e, int(k))
        for p, e, k in grouped.select(partition, "max_event", "max_kafka").iter_rows()
    }


def advance(
    state: WatermarkState,
    stats: dict[int, PartitionStats],
    now_us: int,
    spec: WatermarkSpec,
) -> WatermarkState:
    """The state after seeing `stats` at `now_us`: clocks moved forward, watermark recomputed."""
    clocks = dict(state.partitions)
    for p, s in stats.items():
        old = clocks.get(p)
        highest = _max(old.max_event_us if old else None, s.max_event_us)
        last = max(old.last_record_us, s.max_kafka_us) if old else s.max_kafka_us
        clocks[p] = PartitionClock(highest, last)
    candidate = watermark_of(clocks, now_us, spec)
    return WatermarkState(_max(state.watermark_us, candidate), clocks)


def watermark_of(clocks: dict[int, PartitionClock], now_us: int, spec: WatermarkSpec) -> int | None:
    """The watermark the clocks give at `now_us`, before the never-backwards rule."""
    seen = {p: c for p, c in clocks.items() if c.max_event_us is not None}
    if not seen:
        return None
    active = [
        c.max_event_us
        for c in seen.values()
        if c.max_event_us is not None and now_us - c.last_record_us < spec.idle_timeout_us
    ]
    if active:
        return min(active) - spec.out_of_orderness_us
    return max(c.max_event_us for c in seen.values() if c.max_event_us is not None) - (
        spec.out_of_orderness_us
    )


def idle_partitions(
    clocks: dict[int, PartitionClock], now_us: int, spec: WatermarkSpec
) -> list[int]:
    """Partitions not holding the watermark back at `now_us` (for the report)."""
    return sorted(p for p, c in clocks.items() if now_us - c.last_record_us >= spec.idle_timeout_us)


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
