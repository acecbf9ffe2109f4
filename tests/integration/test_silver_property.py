"""Property: the silver pass over a real catalog equals a brute-force model, whatever the
events and however they are split into micro-batches.

Random out-of-order events over several partitions, some very late, some from the far
future, are committed to a bronze table batch by batch through the real commit protocol;
after each batch one silver pass runs. At the end a final event per partition moves the
watermark past every window of the data. Then:
- the silver rows (values, revision, final) equal the model's, which replays the same
  batches with the definitions of docs/windows.md written as plain loops (`emit: final`
  and `emit: updates`, whose open windows are written as they grow);
- with an allowed lateness no event exceeds, the values equal one aggregation over all the
  events at once, so they cannot depend on the split;
- `silver.late_events` holds exactly the model's late events, each once, with its verdict.
"""

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyiceberg.catalog import Catalog

from lakehouse.iceberg.catalog import ensure_table, load_catalog
from lakehouse.settings import Settings
from lakehouse.windowing.silver import run_silver_pass
from tests.integration.silver_helpers import (
    Bronze,
    Click,
    assert_silver_equals_model,
    at,
    click_spec,
    model_of,
    us,
)

pytestmark = pytest.mark.slow

LOOKUP = "reference.property_products"
CATEGORIES = {"p1": "books", "p2": "books", "p3": "toys"}  # p4 is missing: an unmatched key
PRODUCTS = [*CATEGORIES, "p4", None]
S = 1_000_000

DECLARATIONS: dict[str, dict[str, Any]] = {
    "tumbling_where": {
        "tumbling": "1m",
        "where": "action = 'view'",
        "group_by": ["page"],
        "aggregate": {"views": "count(*)", "users": "count(distinct user_id)"},
    },
    "sliding_join": {
        "sliding": {"size": "90s", "every": "30s"},
        "join": {"table": LOOKUP, "on": "product_id"},
        "group_by": ["category"],
        "aggregate": {"events": "count(*)", "revenue": "sum(price)"},
    },
}


def _values(name: str, clicks: list[Click]) -> dict[str, Any]:
    if name == "tumbling_where":
        return {"views": len(clicks), "users": len({c.user_id for c in clicks})}
    prices = [c.price for c in clicks if c.price is not None]
    return {"events": len(clicks), "revenue": round(sum(prices), 6) if prices else None}


def _key(name: str, click: Click) -> tuple[Any, ...]:
    if name == "tumbling_where":
        return (click.page,)
    return (CATEGORIES.get(click.product_id or ""),)


def _keep(name: str, click: Click) -> bool:
    return click.action == "view" if name == "tumbling_where" else True


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Catalog]]:
    home: Path = tmp_path_factory.mktemp("silver-property")
    config = Settings(home=home)
    catalog = load_catalog(config)
    schema = pa.schema([("product_id", pa.string()), ("category", pa.string())])
    table = ensure_table(catalog, LOOKUP, schema)
    rows = [{"product_id": p, "category": c} for p, c in CATEGORIES.items()]
    table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
    yield config, catalog


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Click], list[int]]:
    """Events in arrival order, and the cut points that split them into batches."""
    partitions = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    clicks = []
    for _ in range(n):
        # 5-second steps: windows (30 s multiples) and watermarks meet on their boundaries
        event = draw(st.integers(0, 120)) * 5.0
        kind = draw(st.sampled_from(["on_time"] * 6 + ["late", "very_late", "future"]))
        delay = (
            5.0
            * {
                "on_time": draw(st.integers(0, 4)),
                "late": draw(st.integers(6, 40)),
                "very_late": draw(st.integers(40, 180)),
                "future": 0,
            }[kind]
        )
        arrival = at(event + delay)
        if kind == "future":
            event += 3 * 3600  # three hours ahead of its Kafka timestamp
        clicks.append(
            Click(
                partition=draw(st.integers(0, partitions - 1)),
                event_time=at(event),
                arrival=arrival,
                page=draw(st.sampled_from(["/", "/cart", "/product"])),
                user_id=draw(st.sampled_from(["u1", "u2", "u3"])),
                product_id=draw(st.sampled_from(PRODUCTS)),
                action=draw(st.sampled_from(["view", "view", "purchase"])),
                price=draw(st.sampled_from([None, 1.5, 10.25, 99.0])),
            )
        )
    clicks.sort(key=lambda c: c.arrival)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5))))
    return clicks, cuts


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    timeline=timelines(),
    name=st.sampled_from(sorted(DECLARATIONS)),
    lateness=st.sampled_from(["1d", "60s"]),
    emit=st.sampled_from(["final", "updates"]),
)
def test_silver_equals_the_brute_force_model(
    catalog: tuple[Settings, Catalog],
    timeline: tuple[list[Click], list[int]],
    name: str,
    lateness: str,
    emit: str,
) -> None:
    config, cat = catalog
    clicks, cuts = timeline
    spec = click_spec({name: {**DECLARATIONS[name], "allowed_lateness": lateness, "emit": emit}})
    bronze = Bronze(cat, spec)
    model = model_of(
        spec,
        name,
        keep=lambda c: _keep(name, c),
        key=lambda c: _key(name, c),
        values=lambda cs: _values(name, cs),
    )
    batches = [clicks[a:b] for a, b in zip([0, *cuts], [*cuts, len(clicks)], strict=True)]
    last = max(c.arrival for c in clicks)
    partitions = sorted({c.partition for c in clicks})
    closing = [Click(p, last + timedelta(hours=6), last + timedelta(hours=6)) for p in partitions]
    for batch in [*[b for b in batches if b], closing]:
        placed = bronze.append(batch)
        now = max(c.arrival for c in batch)
        run_silver_pass(config, spec, name, catalog=cat, now=now)
        model.run_pass(placed, us(now))

    key_column = DECLARATIONS[name]["group_by"][0]
    got = assert_silver_equals_model(cat, spec, name, model, [key_column])

    if lateness == "1d":  # nothing exceeds it: the values are those of all events at once
        everything: dict[tuple[Any, ...], list[Click]] = defaultdict(list)
        for _, _, click in bronze.rows[: -len(closing)]:
            if _keep(name, click):
                for start in model.windows_of(us(click.event_time)):
                    everything[(start, *_key(name, click))].append(click)
        for window_key, events in everything.items():
            if window_key in got:
                assert {c: got[window_key][c] for c in _values(name, events)} == pytest.approx(
                    _values(name, events)
                )
        final_watermark = model.watermark
        assert final_watermark is not None
        closed = {k for k in everything if k[0] + model.size <= final_watermark}
        assert closed == {k for k, row in got.items() if row["final"]}
