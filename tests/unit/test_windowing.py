"""The pure windowing core, without Iceberg: durations, window ranges, the watermark, late
classification, declarations and plans, the state kept in table properties."""

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.config import StreamSpec, parse_declarations
from lakehouse.errors import ConfigError
from lakehouse.windowing.compute import WS, T, WindowPlan
from lakehouse.windowing.declarations import WatermarkSpec
from lakehouse.windowing.durations import format_duration, parse_duration_us
from lakehouse.windowing.late import LateRule
from lakehouse.windowing.ranges import WindowShape, merge_intervals
from lakehouse.windowing.state import (
    SilverState,
    format_timestamp,
    parse_timestamp_us,
)
from lakehouse.windowing.watermark import (
    PartitionClock,
    PartitionStats,
    WatermarkState,
    advance,
    watermark_of,
)

S = 1_000_000
MINUTE = 60 * S
shapes = st.sampled_from(
    [WindowShape(MINUTE, MINUTE), WindowShape(5 * MINUTE, MINUTE), WindowShape(90 * S, 40 * S)]
)
times = st.integers(-(10**13), 10**13)


# Durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "us"), [("30s", 30 * S), ("5m", 5 * MINUTE), ("2h", 7200 * S), ("1d", 86400 * S)]
)
def test_durations(text: str, us: int) -> None:
    assert parse_duration_us(text) == us
    assert format_duration(us) == text


@pytest.mark.parametrize("text", ["5", "5 minutes", "1w", "-1m", "", 300])
def test_bad_durations_say_what_is_accepted(text: object) -> None:
    with pytest.raises(ValueError, match=r"<n>s, <n>m, <n>h or <n>d"):
        parse_duration_us(text)  # type: ignore[arg-type]


# Window ranges ----------------------------------------------------------------------------


def _walk(shape: WindowShape, t: int) -> list[int]:
    """Every start k*every with start <= t < start + size, by walking back from t."""
    start = (t // shape.every_us) * shape.every_us
    found = []
    while start + shape.size_us > t:
        found.append(start)
        start -= shape.every_us
    return sorted(found)


@given(shape=shapes, t=times)
def test_windows_holding_a_time_match_a_walk(shape: WindowShape, t: int) -> None:
    starts = list(shape.starts_holding(t))
    assert starts == _walk(shape, t)
    assert all(s % shape.every_us == 0 for s in starts)  # aligned to the epoch
    assert shape.first_end(t) == starts[0] + shape.size_us
    frame = pl.DataFrame({T: [t]}).with_columns(
        shape.starts_expr(pl.col(T)).alias(WS), shape.first_end_expr(pl.col(T)).alias("end")
    )
    column = frame[WS].to_list()[0]
    assert (column if isinstance(column, list) else [column]) == starts
    assert frame["end"].to_list() == [starts[0] + shape.size_us]


def test_one_minute_windows_start_on_the_minute() -> None:
    shape = WindowShape(MINUTE, MINUTE)
    noon = int(datetime(2026, 3, 1, 12, 0, 41, tzinfo=UTC).timestamp()) * S
    assert list(shape.starts_holding(noon)) == [noon - 41 * S]


@given(shape=shapes, after=times, span=st.integers(0, 10**10))
def test_windows_closing_between_two_watermarks(shape: WindowShape, after: int, span: int) -> None:
    upto = after + span
    closing = list(shape.starts_closing(after, upto, lowest=0))
    lo = (after // shape.every_us - shape.size_us // shape.every_us - 2) * shape.every_us
    expected = [s for s in range(lo, upto + 1, shape.every_us) if after < s + shape.size_us <= upto]
    assert closing == expected


def test_intervals_merge_where_they_touch() -> None:
    assert merge_intervals([(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]) == [(0, 3), (5, 9)]


# Watermark --------------------------------------------------------------------------------

SPEC = WatermarkSpec(max_out_of_orderness="10s", idle_partition_timeout="60s", max_future_skew="1h")


def test_watermark_is_the_slowest_active_partition_minus_out_of_orderness() -> None:
    clocks = {0: PartitionClock(100 * S, 100 * S), 1: PartitionClock(70 * S, 95 * S)}
    assert watermark_of(clocks, now_us=100 * S, spec=SPEC) == 60 * S


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    clocks = {0: PartitionClock(500 * S, 500 * S), 1: PartitionClock(70 * S, 70 * S)}
    assert watermark_of(clocks, now_us=129 * S, spec=SPEC) == 60 * S  # 59 s silent: active
    assert watermark_of(clocks, now_us=130 * S, spec=SPEC) == 490 * S  # 60 s silent: idle


def test_all_idle_uses_the_highest_partition() -> None:
    clocks = {0: PartitionClock(500 * S, 500 * S), 1: PartitionClock(70 * S, 70 * S)}
    assert watermark_of(clocks, now_us=10_000 * S, spec=SPEC) == 490 * S


def test_watermark_never_moves_backwards() -> None:
    state = WatermarkState(1_000 * S, {0: PartitionClock(1_010 * S, 1_010 * S)})
    later = advance(state, {1: PartitionStats(50 * S, 1_010 * S)}, 1_010 * S, SPEC)
    assert later.watermark_us == 1_000 * S  # partition 1 is far behind, but the mark stays
    assert later.partitions[1] == PartitionClock(50 * S, 1_010 * S)


def test_a_partition_with_only_future_events_does_not_hold_anything() -> None:
    state = advance(WatermarkState(), {0: PartitionStats(None, 100 * S)}, 100 * S, SPEC)
    assert state.watermark_us is None
    state = advance(state, {1: PartitionStats(90 * S, 100 * S)}, 100 * S, SPEC)
    assert state.watermark_us == 80 * S


# Late events ------------------------------------------------------------------------------


@given(shape=shapes, t=times, wm=st.one_of(st.none(), times), late=st.integers(0, 10**10))
def test_late_columns_match_the_scalar_rule(
    shape: WindowShape, t: int, wm: int | None, late: int
) -> None:
    rule = LateRule(shape, late, wm)
    frame = pl.DataFrame({T: [t]}).with_columns(
        *rule.columns(pl.col(T)), rule.correctable_starts_expr(pl.col(T)).alias("starts")
    )
    row = frame.row(0, named=True)
    closed = [s for s in _walk(shape, t) if wm is not None and s + shape.size_us <= wm]
    fixable = [s for s in closed if wm is not None and wm < s + shape.size_us + late]
    assert row["late"] == bool(closed) == (wm is not None and shape.first_end(t) <= wm)
    assert row["windows_closed"] == len(closed) == rule.closed_count(t)
    assert row["windows_corrected"] == len(fixable)
    assert row["corrected"] == (bool(closed) and len(fixable) == len(closed))
    assert row["starts"] == fixable == rule.correctable_starts(t)


# Declarations -----------------------------------------------------------------------------


def _declare(window: dict[str, object]) -> None:
    parse_declarations(
        {"streams": {"clicks": {"topic": "c", "event_time": "t", "windows": {"w5": window}}}}
    )


def test_every_larger_than_size_names_stream_window_and_field() -> None:
    with pytest.raises(ConfigError, match=r"stream 'clicks': window 'w5', field 'sliding.every'"):
        _declare({"sliding": {"size": "1m", "every": "5m"}, "aggregate": {"n": "count(*)"}})


def test_unknown_aggregate_function_names_stream_window_and_field() -> None:
    with pytest.raises(
        ConfigError, match=r"stream 'clicks': window 'w5', field 'aggregate.n'.*'mediam'"
    ):
        _declare({"tumbling": "1m", "aggregate": {"n": "mediam(price)"}})


def test_a_non_aggregate_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"field 'aggregate.n'.*not an aggregate"):
        _declare({"tumbling": "1m", "aggregate": {"n": "price * 2"}})


def test_a_where_that_does_not_parse_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"window 'w5', field 'where'"):
        _declare({"tumbling": "1m", "where": "action = ", "aggregate": {"n": "count(*)"}})


def test_unknown_keys_and_clashing_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"window 'w5', field 'emitt'"):
        _declare({"tumbling": "1m", "aggregate": {"n": "count(*)"}, "emitt": "final"})
    with pytest.raises(ConfigError, match=r"clash.*revision"):
        _declare({"tumbling": "1m", "aggregate": {"revision": "count(*)"}})
    with pytest.raises(ConfigError, match=r"one of 'sliding"):
        _declare({"aggregate": {"n": "count(*)"}})


def test_the_issue_syntax_loads() -> None:
    _declare(
        {
            "sliding": {"size": "5m", "every": "1m"},
            "where": "action = 'view'",
            "group_by": ["page"],
            "aggregate": {
                "views": "count(*)",
                "users": "count(distinct user_id)",
                "revenue": "sum(price)",
            },
            "allowed_lateness": "1d",
            "emit": "final",
            "join": {"table": "reference.products", "on": "product_id"},
        }
    )


BRONZE = pl.Schema(
    {
        "event_time": pl.Datetime("us", "UTC"),
        "page": pl.String(),
        "user_id": pl.String(),
        "product_id": pl.String(),
        "price": pl.Float64(),
        "action": pl.String(),
    }
)
PRODUCTS = pl.Schema(
    {
        "product_id": pl.String(),
        "name": pl.String(),
        "category": pl.String(),
        "list_price": pl.Float64(),
    }
)


def _stream(window: dict[str, object]) -> StreamSpec:
    return StreamSpec(name="clicks", topic="clicks", event_time="event_time", windows={"w": window})


@pytest.mark.parametrize(
    ("window", "field"),
    [
        ({"tumbling": "1m", "group_by": ["pge"], "aggregate": {"n": "count(*)"}}, "group_by"),
        ({"tumbling": "1m", "aggregate": {"n": "sum(prize)"}}, "aggregate.n"),
        ({"tumbling": "1m", "where": "acton = 'v'", "aggregate": {"n": "count(*)"}}, "where"),
        (
            {
                "tumbling": "1m",
                "join": {"table": "reference.products", "on": "sku"},
                "aggregate": {"n": "count(*)"},
            },
            "join.on",
        ),
        ({"tumbling": "1m", "aggregate": {"n": "sum(page)"}}, "aggregate.n"),
    ],
)
def test_a_column_that_does_not_exist_names_stream_window_and_field(
    window: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"stream 'clicks', window 'w', field '{field}'"):
        WindowPlan.build(_stream(window), "w", BRONZE, PRODUCTS)


def test_a_plan_reads_only_the_columns_it_needs_and_types_its_output() -> None:
    window = {
        "tumbling": "1m",
        "join": {"table": "reference.products", "on": "product_id"},
        "where": "action = 'purchase'",
        "group_by": ["category"],
        "aggregate": {"revenue": "sum(price)", "buyers": "count(distinct user_id)"},
    }
    plan = WindowPlan.build(_stream(window), "w", BRONZE, PRODUCTS)
    assert plan.bronze_columns == ("action", "event_time", "price", "product_id", "user_id")
    assert plan.lookup_columns == ("product_id", "name", "category", "list_price")
    assert dict(plan.output_schema) == {
        "window_start": pl.Datetime("us", "UTC"),
        "window_end": pl.Datetime("us", "UTC"),
        "category": pl.String(),
        "revenue": pl.Float64(),
        "buyers": pl.Int64(),
        "revision": pl.Int32(),
        "final": pl.Boolean(),
        "updated_at": pl.Datetime("us", "UTC"),
    }


def test_a_lookup_column_clashing_with_bronze_is_refused() -> None:
    products = pl.Schema({**PRODUCTS, "price": pl.Float64()})
    window = {
        "tumbling": "1m",
        "join": {"table": "reference.products", "on": "product_id"},
        "aggregate": {"n": "count(*)"},
    }
    with pytest.raises(ConfigError, match=r"field 'join.columns'.*'price'"):
        WindowPlan.build(_stream(window), "w", BRONZE, products)
    window["join"] = {"table": "reference.products", "on": "product_id", "columns": ["category"]}
    assert WindowPlan.build(_stream(window), "w", BRONZE, products).lookup_columns == (
        "product_id",
        "category",
    )


def test_sliding_windows_exist_before_a_groups_first_event() -> None:
    """group_by_dynamic leaves these out; the plan must not."""
    window = {
        "sliding": {"size": "5m", "every": "1m"},
        "group_by": ["page"],
        "aggregate": {"n": "count(*)"},
    }
    plan = WindowPlan.build(_stream(window), "w", BRONZE)
    rows = pl.DataFrame({T: [10 * MINUTE + 5 * S], "page": ["/"]})
    assert sorted(plan.aggregate(rows)[WS].to_list()) == [m * MINUTE for m in range(6, 11)]


# State ------------------------------------------------------------------------------------


def test_state_round_trips_through_table_properties() -> None:
    late = pa.table({"kafka_offset": pa.array([3, 9], pa.int64())})
    state = SilverState(
        position={0: 10, 3: 7},
        watermark=WatermarkState(
            1_700_000_000_123_456, {0: PartitionClock(5, 6), 3: PartitionClock(None, 9)}
        ),
        late_seq=4,
        outbox=late,
        declaration='{"x":1}',
        lookup_snapshot=42,
    )
    again = SilverState.from_properties(state.to_properties())
    assert again == SilverState(**{**state.__dict__, "outbox": again.outbox})
    assert again.outbox is not None and again.outbox.equals(late)
    assert SilverState.from_properties({}) == SilverState()


def test_timestamps_are_iso_utc() -> None:
    us = 1_767_268_800_000_001
    assert format_timestamp(us) == "2026-01-01T12:00:00.000001+00:00"
    assert parse_timestamp_us(format_timestamp(us)) == us
    assert format_timestamp(None) == "" and parse_timestamp_us("") is None


def test_the_issue_yaml_loads_with_a_bare_on_key() -> None:
    """YAML 1.1 reads `on:` as the boolean true; the declaration must still mean the key."""
    import yaml

    text = """
streams:
  clicks:
    topic: clicks
    event_time: event_time
    watermark:
      max_out_of_orderness: 30s
      idle_partition_timeout: 60s
    windows:
      views_per_page_5m:
        sliding: {size: 5m, every: 1m}
        where: "action = 'view'"
        group_by: [page]
        aggregate:
          views: "count(*)"
          users: "count(distinct user_id)"
          revenue: "sum(price)"
        allowed_lateness: 1d
        emit: final
        join: {table: reference.products, on: product_id}
"""
    stream = parse_declarations(yaml.safe_load(text)).streams["clicks"]
    window = stream.windows["views_per_page_5m"]
    assert window.join is not None and window.join.on == "product_id"
    assert (window.size_us, window.every_us) == (5 * MINUTE, MINUTE)
    assert stream.watermark.out_of_orderness_us == 30 * S
