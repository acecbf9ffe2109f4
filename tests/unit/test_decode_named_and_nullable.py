"""The bulk (polars) path reads named types reused by name and optional records itself.

Both used to decode right but fall back, datum by datum, to the safe path (6k and 1.5k
records/s instead of ~300k). Each test spies on `decode._safe` to prove no datum took it,
and compares the values, the Arrow schema and the physical arrays with the safe path's.
"""

import json
import random
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

import lakehouse.avro.decode as decode_module
from lakehouse.avro import decode_values
from lakehouse.avro.arrow_types import arrow_schema
from lakehouse.avro.canonical import zigzag
from lakehouse.avro.named import MAX_EXPANDED_NODES, inline_named_types
from lakehouse.avro.schema import parse
from lakehouse.avro.testing import DictSchemaSource, encode, encode_frame
from lakehouse.avro.wire import frame
from lakehouse.avro.writer_schema import WriterSchema

GEO = {
    "type": "record",
    "name": "Geo",
    "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}],
}
KIND = {"type": "enum", "name": "Kind", "symbols": ["VIEW", "CLICK"]}
PAIR = {"type": "fixed", "name": "Pair", "size": 2}
TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}
DECIMAL_FIXED = {"logicalType": "decimal", "precision": 6, "scale": 2}


def record(name: str, fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": fields, **extra}


# Every named kind defined once and used again by name, in fields, arrays and unions.
NAMED = record(
    "Path",
    [
        {"name": "id", "type": "long"},
        {"name": "here", "type": GEO},
        {"name": "there", "type": "Geo"},
        {"name": "maybe", "type": ["null", "lakehouse.test.Geo"], "default": None},
        {"name": "trail", "type": {"type": "array", "items": "Geo"}},
        {"name": "kind", "type": KIND},
        {"name": "again", "type": "Kind"},
        {"name": "pair", "type": PAIR},
        {"name": "pair2", "type": "Pair"},
        # a type already called Geo_2, so the copies of Geo must be named otherwise
        {"name": "other", "type": record("Geo_2", [{"name": "x", "type": "int"}])},
    ],
    namespace="lakehouse.test",
)

INNER = record("Inner", [{"name": "n", "type": "int"}, {"name": "s", "type": "string"}])
# Optional records holding required fields of every shape, nested optional records, and
# arrays of (optional) records.
NULLABLE = record(
    "Opt",
    [
        {"name": "id", "type": "long"},
        {"name": "maybe_geo", "type": ["null", GEO], "default": None},
        {
            "name": "outer",
            "type": [
                "null",
                record(
                    "Outer",
                    [
                        {"name": "name", "type": "string"},
                        {"name": "at", "type": TS_MILLIS},
                        {"name": "price", "type": DECIMAL},
                        {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 3}},
                        {"name": "inner", "type": INNER},
                        {"name": "maybe_inner", "type": ["null", "Inner"], "default": None},
                        {"name": "tags", "type": {"type": "array", "items": "string"}},
                        {"name": "zip", "type": ["null", "int"], "default": None},
                    ],
                ),
            ],
            "default": None,
        },
        {"name": "stops", "type": {"type": "array", "items": ["null", "Geo"]}},
        {"name": "last", "type": [GEO | {"name": "Last"}, "null"]},  # null second
    ],
)


def geo(rng: random.Random) -> dict[str, float]:
    return {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)}


def named_records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "id": i,
            "here": geo(rng),
            "there": geo(rng),
            "maybe": geo(rng) if rng.random() < 0.5 else None,
            "trail": [geo(rng) for _ in range(rng.randrange(3))],
            "kind": rng.choice(["VIEW", "CLICK"]),
            "again": rng.choice(["VIEW", "CLICK"]),
            "pair": rng.randbytes(2),
            "pair2": rng.randbytes(2),
            "other": {"x": rng.randrange(-(2**31), 2**31)},
        }
        for i in range(n)
    ]


def nullable_records(n: int, seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)

    def inner() -> dict[str, Any]:
        return {"n": rng.randrange(-1000, 1000), "s": f"s{rng.randrange(100)}"}

    def outer() -> dict[str, Any]:
        return {
            "name": f"n{rng.randrange(100)}",
            "at": rng.randrange(-(10**12), 10**13),
            "price": Decimal(rng.randrange(-(10**8), 10**8)).scaleb(-2),
            "code": rng.randbytes(3),
            "inner": inner(),
            "maybe_inner": inner() if rng.random() < 0.5 else None,
            "tags": [f"t{j}" for j in range(rng.randrange(3))],
            "zip": rng.randrange(99999) if rng.random() < 0.5 else None,
        }

    return [
        {
            "id": i,
            "maybe_geo": geo(rng) if rng.random() < 0.6 else None,
            "outer": outer() if rng.random() < 0.6 else None,
            "stops": [geo(rng) if rng.random() < 0.5 else None for _ in range(rng.randrange(4))],
            "last": geo(rng) if rng.random() < 0.5 else None,
        }
        for i in range(n)
    ]


class _Fixed:
    def __init__(self, writer: WriterSchema) -> None:
        self.writer = writer

    def writer_schema(self, schema_id: int) -> WriterSchema:
        return self.writer


@pytest.fixture
def safe_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Datum counts of each call to the per-datum safe path."""
    calls: list[int] = []
    real = decode_module._safe

    def spy(group: Any, pending: list[int], *args: Any) -> Any:
        calls.append(len(pending))
        return real(group, pending, *args)

    monkeypatch.setattr(decode_module, "_safe", spy)
    return calls


def decode_both(
    schema: dict[str, Any], frames: list[bytes], safe_calls: list[int]
) -> tuple[Any, Any]:
    """(bulk path result, forced safe path result); asserts the bulk path read every datum."""
    source = DictSchemaSource({1: schema})
    writer = source.writer_schema(1)
    assert writer.path == "fast", writer.reason
    bulk = decode_values(frames, source)
    assert sum(safe_calls) == 0, f"{sum(safe_calls)} of {len(frames)} datums took the safe path"
    forced = WriterSchema(**{**writer.__dict__, "path": "safe"})
    safe = decode_values(frames, _Fixed(forced))
    assert sum(safe_calls) == len(frames)
    return bulk, safe


def assert_identical(bulk: pa.Table, safe: pa.Table, schema: dict[str, Any]) -> None:
    """Same schema (the one arrow_types gives), same values, same physical child arrays."""
    assert bulk.schema == safe.schema == arrow_schema(schema)
    assert bulk.equals(safe, check_metadata=True)
    assert bulk.to_pylist() == safe.to_pylist()
    for name in bulk.column_names:
        got, want = bulk.column(name).combine_chunks(), safe.column(name).combine_chunks()
        _assert_same_children(got, want, name)


def _assert_same_children(got: pa.Array, want: pa.Array, where: str) -> None:
    """Even under null parents (which `equals` skips), children hold the same values."""
    assert got.type == want.type, where
    assert got.is_null().to_pylist() == want.is_null().to_pylist(), where
    if pa.types.is_struct(got.type):
        for i, field in enumerate(got.type):
            child, expected = got.field(i), want.field(i)
            if not field.nullable:
                assert child.null_count == 0, f"{where}.{field.name} has nulls"
            assert child.to_pylist() == expected.to_pylist(), f"{where}.{field.name}"
            _assert_same_children(child, expected, f"{where}.{field.name}")
    elif pa.types.is_list(got.type):
        _assert_same_children(got.flatten(), want.flatten(), f"{where}[]")


def test_named_types_reused_by_name_are_read_by_the_bulk_path(safe_calls: list[int]) -> None:
    records = named_records(500)
    frames = [encode_frame(1, NAMED, r) for r in records]
    bulk, safe = decode_both(NAMED, frames, safe_calls)
    assert bulk.failures == safe.failures == []
    assert_identical(bulk.table, safe.table, NAMED)
    assert bulk.row_index.to_pylist() == list(range(len(records)))
    rows = bulk.table.to_pylist()
    for row, want in zip(rows, records, strict=True):
        assert row == want


def test_nullable_records_with_nulls_are_read_by_the_bulk_path(safe_calls: list[int]) -> None:
    records = nullable_records(600)
    assert any(r["outer"] is None for r in records) and any(r["outer"] for r in records)
    frames = [encode_frame(1, NULLABLE, r) for r in records]
    bulk, safe = decode_both(NULLABLE, frames, safe_calls)
    assert bulk.failures == safe.failures == []
    assert_identical(bulk.table, safe.table, NULLABLE)
    geo_type = bulk.table.schema.field("maybe_geo")
    assert geo_type.nullable and not any(f.nullable for f in geo_type.type)  # Iceberg: required
    rows = bulk.table.to_pylist()
    for row, want in zip(rows, records, strict=True):
        assert row["id"] == want["id"]
        assert row["maybe_geo"] == want["maybe_geo"]
        assert row["stops"] == want["stops"]
        assert row["last"] == want["last"]
        assert (row["outer"] is None) == (want["outer"] is None)
        if want["outer"] is not None:
            assert row["outer"]["price"] == want["outer"]["price"]
            assert row["outer"]["inner"] == want["outer"]["inner"]
            assert row["outer"]["maybe_inner"] == want["outer"]["maybe_inner"]


@pytest.mark.parametrize("value", [None, {"lat": 1.5, "lon": -2.5}], ids=["all-null", "none-null"])
def test_optional_record_all_null_or_none_null(value: Any, safe_calls: list[int]) -> None:
    schema = record("One", [{"name": "g", "type": ["null", GEO]}])
    frames = [encode_frame(1, schema, {"g": value}) for _ in range(20)]
    bulk, safe = decode_both(schema, frames, safe_calls)
    assert_identical(bulk.table, safe.table, schema)
    assert bulk.table.column("g").to_pylist() == [value] * 20


def test_two_writer_schemas_with_optional_records_combine(safe_calls: list[int]) -> None:
    """Combining schemas casts the bulk table again: the filled children must allow it."""
    v1 = record("E", [{"name": "g", "type": ["null", GEO]}])
    v2 = record("E", [*v1["fields"], {"name": "extra", "type": ["null", "string"]}])
    source = DictSchemaSource({1: v1, 2: v2})
    frames = []
    for i in range(40):
        g = None if i % 3 == 0 else {"lat": float(i), "lon": -float(i)}
        frames.append(
            encode_frame(2, v2, {"g": g, "extra": "x"}) if i % 2 else encode_frame(1, v1, {"g": g})
        )
    result = decode_values(frames, source)
    assert sum(safe_calls) == 0 and result.failures == []
    assert result.table.column("g").to_pylist() == [
        None if i % 3 == 0 else {"lat": float(i), "lon": -float(i)} for i in range(40)
    ]


def test_bad_datums_beside_named_and_optional_records_are_still_caught() -> None:
    """The exactness proof still runs: bad union bytes and trailing bytes are dead-lettered."""
    schema = record("Bad", [{"name": "id", "type": "long"}, {"name": "g", "type": ["null", GEO]}])
    source = DictSchemaSource({1: schema})
    good = [encode_frame(1, schema, {"id": i, "g": {"lat": 1.0, "lon": 2.0}}) for i in range(30)]
    union_4 = frame(1, zigzag(7) + zigzag(2) + b"\x00" * 16)  # union index 2
    trailing = frame(1, encode(schema, {"id": 8, "g": None}) + b"\x00")
    frames = [*good[:10], union_4, *good[10:20], trailing, *good[20:]]
    result = decode_values(frames, source)
    assert [(f.index, f.kind) for f in result.failures] == [
        (10, "corrupt-datum"),
        (21, "trailing-bytes"),
    ]
    assert result.table.column("id").to_pylist() == list(range(30))


def test_inlined_text_names_each_copy_uniquely() -> None:
    writer = WriterSchema.from_text(1, json.dumps(NAMED))
    assert writer.path == "fast" and writer.reason == ""
    assert writer.polars_text != writer.text
    inlined = json.loads(writer.polars_text)
    names: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                names.append(node["name"])
            for value in node.values():
                walk(value)

    walk(inlined)
    assert len(names) == len(set(names))  # every named type defined exactly once
    assert "lakehouse.test.Geo" in names and "lakehouse.test.Geo_2" in names
    assert arrow_schema(parse(writer.polars_text)) == writer.arrow
    # A schema without reused names is given to polars unchanged.
    plain = WriterSchema.from_text(2, json.dumps(record("P", [{"name": "g", "type": GEO}])))
    assert plain.polars_text == plain.text


def test_named_types_expanding_too_far_take_the_safe_path() -> None:
    """Each level referring twice to the one below doubles the written-out schema."""
    levels: list[Any] = [record("L0", [{"name": "v", "type": "int"}])]
    for k in range(1, 15):
        levels.append(
            record(f"L{k}", [{"name": "a", "type": levels[-1]}, {"name": "b", "type": f"L{k - 1}"}])
        )
    writer = WriterSchema.from_text(
        1, json.dumps(record("Top", [{"name": "t", "type": levels[-1]}]))
    )
    assert writer.path == "safe"
    assert "expand" in writer.reason
    assert MAX_EXPANDED_NODES < 2**14


def test_inline_named_types_keeps_logical_types() -> None:
    schema = record(
        "T",
        [
            {"name": "a", "type": {"type": "fixed", "name": "D", "size": 4, **DECIMAL_FIXED}},
            {"name": "b", "type": "D"},
            {"name": "t", "type": TS_MILLIS},
        ],
    )
    text = inline_named_types(parse(schema))
    assert arrow_schema(parse(text)) == arrow_schema(schema)


@pytest.mark.parametrize(
    "avro_type",
    [
        record("R", [{"name": "k", "type": KIND}]),
        ["null", record("R", [{"name": "k", "type": KIND}])],
        {"type": "array", "items": KIND},
    ],
    ids=["in-record", "in-optional-record", "in-array"],
)
def test_nested_enums_take_the_safe_path_up_front(avro_type: Any) -> None:
    """polars 2.1 panics on any enum but a top-level field's: routed before it is tried."""
    schema = record("N", [{"name": "v", "type": avro_type}])
    writer = WriterSchema.from_text(1, json.dumps(schema))
    assert writer.path == "safe" and "enum" in writer.reason
    top = WriterSchema.from_text(2, json.dumps(record("T", [{"name": "k", "type": KIND}])))
    assert top.path == "fast"
