"""Each safe schema change alone, end to end: v1 events ingested, the writer switches to v2
(registered under the subject's default compatibility), v2 events and more v1 events (an
old producer still running) ingested without a stop; every value read back through a fresh
pyiceberg reader equals what was produced, old rows reading the new shape."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from lakehouse.iceberg.catalog import load_catalog
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import fresh_spec, ingest_once
from tests.integration.schema_helpers import BASE_FIELDS, by_id, produce_avro, record, table_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2026, 5, 1, tzinfo=UTC)
NULL_STRING = {"name": "note", "type": ["null", "string"], "default": None}
ITEM = record("Item", [{"name": "sku", "type": "string"}])
ITEM_V2 = record("Item", [{"name": "sku", "type": "string"},
                          {"name": "qty", "type": ["null", "int"], "default": None}])  # fmt: skip
VAL = record("Val", [{"name": "a", "type": "int"}])
VAL_V2 = record("Val", [{"name": "a", "type": "int"},
                        {"name": "b", "type": ["null", "string"], "default": None}])  # fmt: skip
ADDR = record("Addr", [{"name": "city", "type": "string"}])
ADDR_V2 = record("Addr", [{"name": "city", "type": "string"},
                          {"name": "zip", "type": ["null", "int"], "default": None}])  # fmt: skip


def dec(precision: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": 2}


def kind(*symbols: str) -> dict[str, Any]:
    return {"type": "enum", "name": "Kind", "symbols": list(symbols)}


Values = Callable[[int], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    v1: list[dict[str, Any]]
    v2: list[dict[str, Any]]
    old: Values  # a v1 event's fields
    new: Values  # a v2 event's fields
    old_read: Values  # a v1 event's fields as the evolved table reads them
    new_read: Values | None = None  # a v2 event's, if not `new`
    changes_schema: bool = True


CASES = {
    "add": Case(
        [{"name": "n", "type": "int"}],
        [{"name": "n", "type": "int"}, NULL_STRING],
        lambda i: {"n": i},
        lambda i: {"n": i, "note": f"note {i}" if i % 2 else None},
        lambda i: {"n": i, "note": None},
    ),
    "nested-add": Case(
        [{"name": "addr", "type": ADDR}],
        [{"name": "addr", "type": ADDR_V2}],
        lambda i: {"addr": {"city": f"c{i}"}},
        lambda i: {"addr": {"city": f"c{i}", "zip": 1000 + i}},
        lambda i: {"addr": {"city": f"c{i}", "zip": None}},
    ),
    "add-in-array-of-records": Case(
        [{"name": "items", "type": {"type": "array", "items": ITEM}}],
        [{"name": "items", "type": {"type": "array", "items": ITEM_V2}}],
        lambda i: {"items": [{"sku": f"a{i}"}, {"sku": "b"}]},
        lambda i: {"items": [{"sku": f"a{i}", "qty": i}, {"sku": "z", "qty": None}]},
        lambda i: {"items": [{"sku": f"a{i}", "qty": None}, {"sku": "b", "qty": None}]},
    ),
    "add-in-map-values": Case(
        [{"name": "attrs", "type": {"type": "map", "values": VAL}}],
        [{"name": "attrs", "type": {"type": "map", "values": VAL_V2}}],
        lambda i: {"attrs": {"k": {"a": i}}},
        lambda i: {"attrs": {"k": {"a": i, "b": f"b{i}"}}},
        lambda i: {"attrs": [("k", {"a": i, "b": None})]},
        lambda i: {"attrs": [("k", {"a": i, "b": f"b{i}"})]},
    ),
    "int-to-long": Case(
        [{"name": "n", "type": "int"}],
        [{"name": "n", "type": "long"}],
        lambda i: {"n": -(2**31) + i},
        lambda i: {"n": 2**40 + i},
        lambda i: {"n": -(2**31) + i},
    ),
    "float-to-double": Case(
        [{"name": "x", "type": "float"}],
        [{"name": "x", "type": "double"}],
        lambda i: {"x": i + 0.5},  # exact in float32
        lambda i: {"x": i + 0.1},  # not: must come back as the double it was
        lambda i: {"x": i + 0.5},
    ),
    "decimal-precision-widened": Case(
        [{"name": "amount", "type": dec(5)}],
        [{"name": "amount", "type": dec(11)}],
        lambda i: {"amount": Decimal(f"{i}23.45")},
        lambda i: {"amount": Decimal(f"{i}234567.89")},
        lambda i: {"amount": Decimal(f"{i}23.45")},
    ),
    "required-made-optional": Case(
        [{"name": "s", "type": "string"}],
        [{"name": "s", "type": ["null", "string"], "default": None}],
        lambda i: {"s": f"s{i}"},
        lambda i: {"s": None if i % 2 else f"s{i}"},
        lambda i: {"s": f"s{i}"},
        changes_schema=False,  # bronze columns are optional from the start
    ),
    "enum-symbol-added": Case(
        [{"name": "kind", "type": kind("a", "b")}],
        [{"name": "kind", "type": kind("a", "b", "c")}],
        lambda i: {"kind": "ab"[i % 2]},
        lambda i: {"kind": "abc"[i % 3]},
        lambda i: {"kind": "ab"[i % 2]},
        changes_schema=False,  # enums are strings in Iceberg
    ),
    "field-removed": Case(
        [{"name": "n", "type": "int"}, {"name": "gone", "type": "string"}],
        [{"name": "n", "type": "int"}],
        lambda i: {"n": i, "gone": f"g{i}"},
        lambda i: {"n": i},
        lambda i: {"n": i, "gone": f"g{i}"},
        lambda i: {"n": i, "gone": None},
        changes_schema=False,  # the column stays; new rows read null
    ),
}


def event(prefix: str, i: int, fields: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": f"{prefix}-{i}", "event_time": START + timedelta(seconds=i), **fields}


@pytest.mark.parametrize("name", list(CASES))
def test_safe_change_applied_without_a_stop(stack: Settings, name: str) -> None:
    case = CASES[name]
    spec = fresh_spec()
    v1, v2 = record("Rec", BASE_FIELDS + case.v1), record("Rec", BASE_FIELDS + case.v2)
    produce_avro(stack, spec.topic, [(v1, event("v1", i, case.old(i))) for i in range(5)])
    first = ingest_once(stack, spec)
    assert first.records_written == 5 and first.dead_letters == 0
    schema_before = load_catalog(stack).load_table(spec.table).schema().schema_id

    later = [(v2, event("v2", i, case.new(i))) for i in range(5)]
    later += [(v1, event("v1", i, case.old(i))) for i in range(5, 8)]  # an old producer
    produce_avro(stack, spec.topic, later)
    second = ingest_once(stack, spec)
    assert second.records_written == 8 and second.dead_letters == 0

    table = load_catalog(stack).load_table(spec.table)
    assert (table.schema().schema_id != schema_before) == case.changes_schema
    rows = by_id(table_rows(stack, spec.table))
    new_read = case.new_read or case.new
    expected = {f"v1-{i}": event("v1", i, case.old_read(i)) for i in range(8)}
    expected |= {f"v2-{i}": event("v2", i, new_read(i)) for i in range(5)}
    assert rows == expected


def test_alias_rename_reads_under_the_old_snapshot_and_the_new_schema(stack: Settings) -> None:
    spec = fresh_spec()
    v1 = record("Rec", [*BASE_FIELDS, {"name": "customer", "type": "string"}])
    v2 = record(
        "Rec", [*BASE_FIELDS, {"name": "client", "aliases": ["customer"], "type": "string"}]
    )
    produce_avro(stack, spec.topic, [(v1, event("v1", i, {"customer": f"c{i}"})) for i in range(4)])
    ingest_once(stack, spec)
    table = load_catalog(stack).load_table(spec.table)
    before = table.current_snapshot()
    assert before is not None
    field_id = table.schema().find_field("customer").field_id

    produce_avro(
        stack,
        spec.topic,
        [(v2, event("v2", i, {"client": f"k{i}"})) for i in range(3)]
        + [(v1, event("v1", 4, {"customer": "c4"}))],  # the old producer, after the rename
    )
    report = ingest_once(stack, spec)
    assert report.records_written == 4 and report.dead_letters == 0

    table = load_catalog(stack).load_table(spec.table)
    assert table.schema().find_field("client").field_id == field_id  # same column, renamed
    assert "customer" not in table.schema().column_names
    now = by_id(table_rows(stack, spec.table))
    assert now == {
        **{f"v1-{i}": event("v1", i, {"client": f"c{i}"}) for i in range(5)},
        **{f"v2-{i}": event("v2", i, {"client": f"k{i}"}) for i in range(3)},
    }
    then = by_id(table_rows(stack, spec.table, snapshot_id=before.snapshot_id))
    assert then == {f"v1-{i}": event("v1", i, {"customer": f"c{i}"}) for i in range(4)}
    files = {f["file_path"] for f in table.inspect.files().to_pylist()}
    old_files = {f["file_path"] for f in table.inspect.files(before.snapshot_id).to_pylist()}
    assert old_files <= files  # nothing copied: the old files are read under the new name
