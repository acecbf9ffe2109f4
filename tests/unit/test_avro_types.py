"""Avro → Arrow: every type, exact values, identical from the fast and the safe path."""

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.avro import arrow_schema, decode_values
from lakehouse.avro.fast import read_fast
from lakehouse.avro.testing import DictSchemaSource, encode, encode_frame
from lakehouse.avro.wire import frame
from lakehouse.avro.writer_schema import WriterSchema

UTC = dt.UTC


def lt(kind: str, logical: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "logicalType": logical, **extra}


# (avro type, arrow type, values written, values expected back)
CASES: list[tuple[str, Any, pa.DataType, list[Any], list[Any] | None]] = [
    ("boolean", "boolean", pa.bool_(), [True, False], None),
    ("int", "int", pa.int32(), [0, -1, 2**31 - 1, -(2**31)], None),
    ("long", "long", pa.int64(), [0, -(2**63), 2**63 - 1, 300], None),
    ("float", "float", pa.float32(), [1.5, -0.0, float("inf")], None),
    ("double", "double", pa.float64(), [1e300, -2.5, 0.1], None),
    ("string", "string", pa.string(), ["", "héllo", "x" * 200], None),
    ("bytes", "bytes", pa.binary(), [b"", b"\x00\xff", b"z" * 300], None),
    (
        "fixed",
        {"type": "fixed", "name": "F", "size": 3},
        pa.binary(3),
        [b"abc", b"\x00\x01\x02"],
        None,
    ),
    (
        "enum",
        {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]},
        pa.string(),
        ["C", "A"],
        None,
    ),
    ("date", lt("int", "date"), pa.date32(), [dt.date(2024, 2, 29), dt.date(1900, 1, 1)], None),
    ("time_ms", lt("int", "time-millis"), pa.time64("us"), [dt.time(23, 59, 59, 999000)], None),
    ("time_us", lt("long", "time-micros"), pa.time64("us"), [dt.time(1, 2, 3, 4)], None),
    (
        "ts_ms",
        lt("long", "timestamp-millis"),
        pa.timestamp("us", tz="UTC"),
        [dt.datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC), dt.datetime(1960, 1, 1, tzinfo=UTC)],
        None,
    ),
    (
        "ts_us",
        lt("long", "timestamp-micros"),
        pa.timestamp("us", tz="UTC"),
        [dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)],
        None,
    ),
    (
        "lts_ms",
        lt("long", "local-timestamp-millis"),
        pa.timestamp("us"),
        [dt.datetime(2025, 1, 2, 3, 4, 5, 6000)],
        None,
    ),
    (
        "lts_us",
        lt("long", "local-timestamp-micros"),
        pa.timestamp("us"),
        [dt.datetime(2025, 1, 2, 3, 4, 5, 6)],
        None,
    ),
    (
        "decimal",
        lt("bytes", "decimal", precision=10, scale=2),
        pa.decimal128(10, 2),
        [Decimal("12345678.90"), Decimal("-0.01"), Decimal("0.00"), Decimal("-128.00")],
        None,
    ),
    (
        "decimal_fixed",
        {
            "type": "fixed",
            "name": "D",
            "size": 8,
            "logicalType": "decimal",
            "precision": 12,
            "scale": 3,
        },
        pa.decimal128(12, 3),
        [Decimal("123456789.123"), Decimal("-1.000")],
        None,
    ),
    (
        "uuid",
        lt("string", "uuid"),
        pa.string(),
        [str(uuid.UUID(int=7)), str(uuid.UUID(int=2**128 - 1))],
        None,
    ),
    ("opt_long", ["null", "long"], pa.int64(), [None, 5], None),
    ("opt_last", ["string", "null"], pa.string(), ["a", None], None),
    (
        "record",
        {"type": "record", "name": "N", "fields": [{"name": "x", "type": ["null", "string"]}]},
        pa.struct([pa.field("x", pa.string())]),
        [{"x": "a"}, {"x": None}],
        None,
    ),
    (
        "array",
        {"type": "array", "items": ["null", "int"]},
        pa.list_(pa.field("element", pa.int32())),
        [[], [1, None, 3], list(range(200))],
        None,
    ),
    (
        "array_records",
        {
            "type": "array",
            "items": {
                "type": "record",
                "name": "I",
                "fields": [{"name": "y", "type": ["null", {"type": "array", "items": "string"}]}],
            },
        },
        pa.list_(
            pa.field(
                "element",
                pa.struct([pa.field("y", pa.list_(pa.field("element", pa.string(), False)))]),
                False,
            )
        ),
        [[{"y": ["a", "b"]}, {"y": None}, {"y": []}], []],
        None,
    ),
    (
        "map",
        {"type": "map", "values": "long"},
        pa.map_(pa.string(), pa.field("value", pa.int64(), False)),
        [{"a": 1, "b": 2}, {}],
        [[("a", 1), ("b", 2)], []],
    ),
    (
        "opt_enum",
        ["null", {"type": "enum", "name": "E2", "symbols": ["X", "Y"]}],
        pa.string(),
        ["Y", None],
        None,
    ),
    (
        "multi_union",
        ["null", "long", "string"],
        pa.struct(
            [
                pa.field("tag", pa.int32(), False),
                pa.field("field1", pa.int64()),
                pa.field("field2", pa.string()),
            ]
        ),
        [None, 5, "x"],
        [None, {"tag": 1, "field1": 5, "field2": None}, {"tag": 2, "field1": None, "field2": "x"}],
    ),
]


def record_schema(avro_type: Any) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "T",
        "fields": [{"name": "id", "type": "long"}, {"name": "v", "type": avro_type}],
    }


def decode_both(schema: dict[str, Any], records: list[dict[str, Any]]) -> tuple[pa.Table, pa.Table]:
    """Decode with the schema's chosen path and with the safe path forced."""
    source = DictSchemaSource({1: schema})
    frames = [encode_frame(1, schema, r) for r in records]
    chosen = decode_values(frames, source)
    writer = source.writer_schema(1)
    forced = WriterSchema(**{**writer.__dict__, "path": "safe"})
    safe = decode_values(frames, _Fixed(forced))
    assert chosen.failures == [] and safe.failures == []
    return chosen.table, safe.table


class _Fixed:
    def __init__(self, writer: WriterSchema) -> None:
        self.writer = writer

    def writer_schema(self, schema_id: int) -> WriterSchema:
        return self.writer


@pytest.mark.parametrize(
    ("name", "avro_type", "arrow_type", "values", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_type(
    name: str, avro_type: Any, arrow_type: pa.DataType, values: list[Any], expected: Any
) -> None:
    schema = record_schema(avro_type)
    assert arrow_schema(schema).field("v").type == arrow_type
    records = [{"id": i, "v": v} for i, v in enumerate(values)]
    chosen, safe = decode_both(schema, records)
    want = expected if expected is not None else values
    for table in (chosen, safe):
        assert table.schema == arrow_schema(schema)
        assert table.column("v").to_pylist() == want
        assert table.column("id").to_pylist() == list(range(len(values)))
    assert chosen.equals(safe)


def test_paths_chosen_from_schema() -> None:
    paths = {
        name: WriterSchema.from_text(1, json.dumps(record_schema(t))).path for name, t, *_ in CASES
    }
    assert {n for n, p in paths.items() if p == "safe"} == {"map", "opt_enum", "multi_union"}


def test_nullability_follows_unions() -> None:
    schema = arrow_schema(record_schema(["null", "long"]))
    assert not schema.field("id").nullable
    assert schema.field("v").nullable


def test_two_writer_schemas_in_one_batch() -> None:
    v1 = {"type": "record", "name": "Click", "fields": [{"name": "id", "type": "long"}]}
    v2 = {
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "page", "type": ["null", "string"], "default": None},
        ],
    }
    source = DictSchemaSource({1: v1, 2: v2})
    values = [
        encode_frame(1, v1, {"id": 0}),
        encode_frame(2, v2, {"id": 1, "page": "/a"}),
        encode_frame(1, v1, {"id": 2}),
        encode_frame(2, v2, {"id": 3, "page": None}),
    ]
    result = decode_values(values, source)
    assert result.failures == []
    assert result.table.to_pylist() == [
        {"id": 0, "page": None},
        {"id": 1, "page": "/a"},
        {"id": 2, "page": None},
        {"id": 3, "page": None},
    ]
    assert result.row_index.to_pylist() == [0, 1, 2, 3]
    assert result.schema_ids.to_pylist() == [1, 2, 1, 2]
    assert result.schema_ids.type == pa.int32()
    assert result.table.schema.field("page").nullable


def test_non_canonical_encoding_is_accepted_through_the_safe_path() -> None:
    schema = record_schema("long")
    # id = 1 written as an overlong (but legal) two-byte varint; v = 3.
    value = frame(1, b"\x82\x00\x06")
    result = decode_values([value], DictSchemaSource({1: schema}))
    assert result.failures == []
    assert result.table.to_pylist() == [{"id": 1, "v": 3}]


def test_fast_path_reads_a_good_group_itself() -> None:
    """A bug in the fast path would silently fall back to the safe path: catch it here."""
    schema = record_schema({"type": "array", "items": ["null", "string"]})
    datums = pa.array(
        [encode(schema, {"id": i, "v": ["a", None]}) for i in range(50)], pa.large_binary()
    )
    table = read_fast(DictSchemaSource({1: schema}).writer_schema(1), datums.slice(10, 30))
    assert table.column("id").to_pylist() == list(range(10, 40))
