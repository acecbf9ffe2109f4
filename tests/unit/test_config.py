"""Stream declarations: defaults, and errors that name the stream and the field."""

from pathlib import Path

import pytest

from lakehouse.config import load_declarations, parse_declarations, parse_partition_expr
from lakehouse.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_declarations_load_with_the_three_demo_streams() -> None:
    declarations = load_declarations(ROOT / "streams.yaml")
    assert set(declarations.streams) == {"clicks", "payments", "readings"}
    clicks = declarations.streams["clicks"]
    assert clicks.table == "bronze.clicks" and clicks.subject == "clicks-value"
    assert clicks.partition_by == ("day(event_time)",)


def test_unknown_field_names_stream_and_field() -> None:
    with pytest.raises(ConfigError, match=r"stream 'clicks'.*'batch.max_recrods'"):
        parse_declarations(
            {"streams": {"clicks": {"topic": "c", "event_time": "t", "batch": {"max_recrods": 1}}}}
        )


def test_missing_required_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"stream 'x'.*'event_time'"):
        parse_declarations({"streams": {"x": {"topic": "x"}}})


def test_bad_partition_transform_is_named() -> None:
    with pytest.raises(ConfigError, match=r"stream 'x'.*partition_by.*weekday"):
        parse_declarations(
            {"streams": {"x": {"topic": "x", "event_time": "t", "partition_by": ["weekday(t)"]}}}
        )


def test_negative_limits_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"'trigger.min_lag_records'"):
        parse_declarations(
            {"streams": {"x": {"topic": "x", "event_time": "t", "trigger": {"min_lag_records": 0}}}}
        )


@pytest.mark.parametrize(
    ("expr", "parsed"),
    [
        ("day(event_time)", ("day", "event_time", None)),
        ("bucket(16, user_id)", ("bucket", "user_id", 16)),
        ("country", ("identity", "country", None)),
    ],
)
def test_partition_expressions(expr: str, parsed: tuple[str, str, int | None]) -> None:
    assert parse_partition_expr(expr) == parsed
