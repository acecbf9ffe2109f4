"""Offset planning and trigger decisions: pure functions, real values."""

import pytest

from lakehouse.config import Trigger
from lakehouse.errors import OffsetGapError
from lakehouse.kafka.offsets import PartitionRange, plan_ranges, range_key, total_lag
from lakehouse.trigger import decide


def test_plan_starts_at_committed_offsets_and_defaults_to_partition_start() -> None:
    ranges = plan_ranges("t", {0: 40}, low={0: 0, 1: 5, 2: 0}, high={0: 100, 1: 9, 2: 0})
    assert ranges == [PartitionRange(0, 40, 100), PartitionRange(1, 5, 9)]
    assert total_lag(ranges) == 64


def test_plan_refuses_a_table_ahead_of_the_topic() -> None:
    with pytest.raises(OffsetGapError, match="deleted and recreated"):
        plan_ranges("t", {0: 500}, low={0: 0}, high={0: 100})


def test_plan_refuses_offsets_lost_to_retention() -> None:
    with pytest.raises(OffsetGapError, match="retention"):
        plan_ranges("t", {0: 10}, low={0: 50}, high={0: 100})


def test_plan_refuses_partitions_that_vanished() -> None:
    with pytest.raises(OffsetGapError, match="no longer"):
        plan_ranges("t", {0: 1, 7: 3}, low={0: 0}, high={0: 10})


def test_nothing_to_do_when_caught_up() -> None:
    assert plan_ranges("t", {0: 100, 1: 7}, low={0: 0, 1: 0}, high={0: 100, 1: 7}) == []


def test_range_key_is_deterministic_and_order_free() -> None:
    a = [PartitionRange(1, 0, 5), PartitionRange(0, 3, 9)]
    assert range_key("t", a) == range_key("t", list(reversed(a))) == "t@0:3-9,1:0-5"


def test_no_lag_skips_with_a_reason() -> None:
    decision = decide("t", [], Trigger(min_lag_records=10), now=100.0, lag_since=None)
    assert not decision.run and "no lag" in decision.reason and decision.lag_since is None


def test_lag_over_threshold_requests_one_run_with_the_planned_range() -> None:
    ranges = [PartitionRange(0, 0, 8), PartitionRange(1, 2, 6)]
    first = decide("t", ranges, Trigger(min_lag_records=10), now=100.0, lag_since=None)
    again = decide("t", ranges, Trigger(min_lag_records=10), now=101.0, lag_since=None)
    assert first.run and first.lag == 12
    assert first.run_key == again.run_key == "t@0:0-8,1:2-6"


def test_small_lag_waits_until_max_wait() -> None:
    ranges = [PartitionRange(0, 0, 3)]
    trigger = Trigger(min_lag_records=100, max_wait_seconds=30)
    early = decide("t", ranges, trigger, now=1000.0, lag_since=None)
    assert not early.run and early.lag_since == 1000.0
    still = decide("t", ranges, trigger, now=1020.0, lag_since=early.lag_since)
    assert not still.run
    due = decide("t", ranges, trigger, now=1031.0, lag_since=early.lag_since)
    assert due.run and "waited 31s" in due.reason
