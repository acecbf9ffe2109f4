"""Schema changes reaching silver: a writer schema promotes the bronze column a window sums
(int → long, float → double); the next silver pass promotes the silver column too, old
windows read the wider type, and every window equals the sum of its bronze rows."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyiceberg.types import DoubleType, LongType

from lakehouse.iceberg.catalog import load_catalog
from lakehouse.settings import Settings
from lakehouse.windowing.silver import run_silver_pass, silver_table_name
from tests.integration.ingest_helpers import fresh_spec, ingest_once
from tests.integration.schema_helpers import BASE_FIELDS, produce_avro, record
from tests.integration.silver_helpers import silver_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 4, 1, 12, tzinfo=UTC)
V1 = record("Sale", [*BASE_FIELDS, {"name": "qty", "type": "int"}, {"name": "w", "type": "float"}])
V2 = record(
    "Sale", [*BASE_FIELDS, {"name": "qty", "type": "long"}, {"name": "w", "type": "double"}]
)


def sale(i: int, qty: int, weight: float) -> dict[str, Any]:
    moment = START + timedelta(seconds=20 * i)  # three per minute
    return {"event_id": f"s{i}", "event_time": moment, "qty": qty, "w": weight}


def test_a_promoted_bronze_column_promotes_the_silver_output(stack: Settings) -> None:
    window = {"tumbling": "1m", "aggregate": {"total": "sum(qty)", "heaviest": "max(w)"}}
    spec = fresh_spec(
        watermark={"max_out_of_orderness": "0s", "idle_partition_timeout": "1h"},
        windows={"sales": window},
    )
    catalog = load_catalog(stack)
    first = [sale(i, 1000 + i, 1.5) for i in range(6)]  # minutes 0 and 1
    produce_avro(stack, spec.topic, [(V1, v) for v in first])
    ingest_once(stack, spec)
    run_silver_pass(stack, spec, "sales", catalog=catalog, now=START + timedelta(minutes=2))
    table = catalog.load_table(silver_table_name(spec, "sales"))
    assert {f.name: str(f.field_type) for f in table.schema().fields}["total"] == "int"

    second = [sale(i, 2**40 + i, 0.1) for i in range(6, 10)]  # minutes 2-3: beyond int
    produce_avro(stack, spec.topic, [(V2, v) for v in second])
    assert ingest_once(stack, spec).dead_letters == 0
    run_silver_pass(stack, spec, "sales", catalog=catalog, now=START + timedelta(minutes=4))

    table = catalog.load_table(silver_table_name(spec, "sales"))
    assert isinstance(table.schema().find_field("total").field_type, LongType)
    assert isinstance(table.schema().find_field("heaviest").field_type, DoubleType)
    sold = first + second
    rows = {r["window_start"]: r for r in silver_frame(catalog, spec, "sales").to_dicts()}
    for minute in (0, 1, 2):
        start = START + timedelta(minutes=minute)
        inside = [s for s in sold if start <= s["event_time"] < start + timedelta(minutes=1)]
        assert rows[start]["total"] == sum(s["qty"] for s in inside), minute
        assert rows[start]["heaviest"] == max(s["w"] for s in inside), minute
