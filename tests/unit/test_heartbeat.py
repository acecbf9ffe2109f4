"""The heartbeat timer beats while its block runs, survives a failing beat, and stops after."""

import threading

import pytest

from lakehouse.heartbeat import beating


def test_beats_while_the_block_runs_and_stops_after() -> None:
    beats: list[int] = []
    third = threading.Event()

    def beat() -> None:
        beats.append(len(beats))
        if len(beats) == 3:
            third.set()

    with beating(0.01, beat):
        assert third.wait(60), "no third beat"
    after = len(beats)
    with beating(3600, beat):
        pass  # the block ends long before a beat is due: none happens, and it returns at once
    assert len(beats) == after


def test_a_failing_beat_is_a_missed_beat_not_a_failure() -> None:
    calls: list[int] = []
    second = threading.Event()

    def beat() -> None:
        calls.append(1)
        if len(calls) >= 2:
            second.set()
        raise RuntimeError("event log unavailable")

    with beating(0.01, beat):
        assert second.wait(60), "the timer stopped after a failed beat"


def test_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError), beating(0, lambda: None):
        pass
