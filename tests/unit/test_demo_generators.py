"""Demo generators: seeded determinism, unique ids, lateness, the v2 switch, valid datums."""

import io
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import fastavro
import pytest

from lakehouse.demo.generators import MAX_LATENESS, MIN_LATENESS, generator
from lakehouse.demo.streams import KEY_FIELDS, STREAMS, demo_schema

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def take(stream: str, n: int, **kwargs):
    return list(itertools.islice(generator(stream, **kwargs), n))


@pytest.mark.parametrize("stream", STREAMS)
def test_same_seed_same_events(stream: str) -> None:
    first = take(stream, 500, seed=7, start=START, late_fraction=0.1)
    again = take(stream, 500, seed=7, start=START, late_fraction=0.1)
    other = take(stream, 500, seed=8, start=START, late_fraction=0.1)
    assert first == again
    assert [e.event_id for e in first] != [e.event_id for e in other]


@pytest.mark.parametrize("stream", STREAMS)
def test_event_ids_unique_and_keys_match(stream: str) -> None:
    events = take(stream, 20_000, seed=1)
    assert len({e.event_id for e in events}) == len(events)
    assert all(e.key == e.value[KEY_FIELDS[stream]] for e in events)


@pytest.mark.parametrize("stream", STREAMS)
def test_late_fraction_roughly_honoured(stream: str) -> None:
    events = take(stream, 10_000, seed=3, start=START, late_fraction=0.2)
    tick = timedelta(milliseconds=10)
    late = 0
    for i, event in enumerate(events):
        lag = START + i * tick - event.value["event_time"]
        if event.late:
            late += 1
            assert MIN_LATENESS <= lag <= MAX_LATENESS
        else:
            assert timedelta(0) <= lag < timedelta(seconds=2)
    assert 0.17 < late / len(events) < 0.23


def test_no_late_events_by_default() -> None:
    assert not any(e.late for e in take("clicks", 2_000, seed=3))


def test_wall_clock_without_start() -> None:
    before = datetime.now(UTC)
    event = take("readings", 1, seed=1)[0]
    assert before - timedelta(seconds=3) < event.value["event_time"] <= datetime.now(UTC)


def test_clicks_switch_to_v2_after_n() -> None:
    events = take("clicks", 300, seed=5, v2_after=100)
    assert [e.schema_version for e in events] == [1] * 100 + [2] * 200
    assert all("user_location" not in e.value for e in events[:100])
    locations = [e.value["user_location"] for e in events[100:]]
    assert None in locations and any(locations)


def test_v2_after_only_for_clicks() -> None:
    with pytest.raises(ValueError, match="clicks"):
        generator("payments", 1, v2_after=10)
    with pytest.raises(ValueError, match="unknown demo stream"):
        generator("orders", 1)


@pytest.mark.parametrize("stream", STREAMS)
def test_events_round_trip_through_their_schema(stream: str) -> None:
    for event in take(stream, 2_000, seed=11, v2_after=1_000 if stream == "clicks" else None):
        schema = demo_schema(stream, event.schema_version).parsed
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, event.value, strict=True)
        buffer.seek(0)
        assert fastavro.schemaless_reader(buffer, schema) == event.value


def test_realistic_shapes() -> None:
    clicks = take("clicks", 5_000, seed=2)
    actions = {e.value["action"] for e in clicks}
    assert actions == {"view", "add_to_cart", "remove_from_cart", "purchase"}
    assert all((e.value["price"] is None) == (e.value["product_id"] is None) for e in clicks)
    payments = take("payments", 2_000, seed=2)
    assert all(
        e.value["amount"] > 0 and e.value["amount"].as_tuple().exponent == -2 for e in payments
    )
    readings = take("readings", 5_000, seed=2)
    by_device: dict[str, list[float]] = {}
    for event in readings:
        by_device.setdefault(event.key, []).append(event.value["temperature"])
        assert (event.value["battery"] * 2).is_integer()
    steps = [abs(b - a) for temps in by_device.values() for a, b in itertools.pairwise(temps)]
    assert max(steps) < 2.0  # drifting, not jumping


def test_event_ids_are_uuid4() -> None:
    for event in take("payments", 200, seed=6):
        assert uuid.UUID(event.event_id).version == 4
        assert str(uuid.UUID(event.event_id)) == event.event_id
