"""Every Avro type the product maps, end to end: produced with confluent-kafka's own
AvroSerializer through the real registry, ingested into Iceberg, read back by a fresh
catalog object and compared value by value with what was produced.

Two schemas: the full one (a map and a nullable enum send it down the safe, per-datum path)
and one without those (the bulk polars path). The same values must come out of both.
"""

import json
import random
import struct
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    StringType,
    StructType,
    TimestamptzType,
)

from lakehouse.avro import decode as decode_module
from lakehouse.config import BatchLimits
from lakehouse.demo.streams import demo_schema
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.kafka.admin import ensure_topic
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import (
    assert_exactly_once,
    fresh_spec,
    iceberg_rows,
    ingest_once,
)

pytestmark = pytest.mark.integration

ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "int"], "default": None},
        {
            "name": "geo",
            "type": {
                "type": "record",
                "name": "Geo",
                "fields": [{"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}],
            },
        },
    ],
}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}
TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
TS_MICROS = {"type": "long", "logicalType": "timestamp-micros"}


def record_schema(name: str, *, safe_path_types: bool) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": "event_id", "type": "string"},
        {"name": "event_time", "type": TS_MILLIS},
        {"name": "ts_micros", "type": TS_MICROS},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "amount", "type": DECIMAL},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "raw", "type": "bytes"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 16}},
        {"name": "ratio", "type": "float"},
        {"name": "score", "type": "double"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "flag", "type": "boolean"},
        {"name": "label", "type": "string"},
        {
            "name": "color",
            "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]},
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "address", "type": ADDRESS},
        {"name": "maybe_text", "type": ["null", "string"], "default": None},
        {"name": "maybe_long", "type": ["null", "long"], "default": None},
        {"name": "maybe_ts", "type": ["null", TS_MICROS], "default": None},
        {"name": "maybe_amount", "type": ["null", DECIMAL], "default": None},
        {"name": "maybe_address", "type": ["null", "Address"], "default": None},
        {"name": "points", "type": {"type": "array", "items": "Geo"}},
    ]
    if safe_path_types:
        fields += [
            {"name": "attrs", "type": {"type": "map", "values": "long"}},
            {"name": "maybe_color", "type": ["null", "Color"], "default": None},
        ]
    return {"type": "record", "name": name, "namespace": "lakehouse.test", "fields": fields}


def f32(x: float) -> float:
    """`x` rounded to float32, the way a float field stores it."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def make_values(n: int, seed: int, *, safe_path_types: bool) -> list[dict[str, Any]]:
    """`n` events with edge values at the start (extremes, empties, nulls, pre-1970 times)."""
    rng = random.Random(seed)
    base = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)
    out = []
    for i in range(n):
        edge = i < 4
        micros = rng.randrange(-(10**12), 10**12)
        value: dict[str, Any] = {
            "event_id": f"evt-{seed}-{i:05d}",
            # ms precision: timestamp-millis keeps no more
            "event_time": base + timedelta(milliseconds=rng.randrange(-(10**9), 10**9)),
            "ts_micros": (
                datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
                if i == 0
                else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
            ),
            "day": date(1900, 1, 1)
            if i == 1
            else date(1970, 1, 1) + timedelta(rng.randrange(-(10**4), 10**5)),
            "amount": (
                Decimal("-999999999.999")
                if i == 0
                else Decimal("999999999.999")
                if i == 1
                else Decimal("0.000")
                if i == 2
                else Decimal(rng.randrange(-(10**11), 10**11)).scaleb(-3)
            ),
            "uid": uuid.UUID(int=rng.getrandbits(128)),
            "raw": b"" if i == 0 else b"\x00\xff" + rng.randbytes(rng.randrange(0, 40)),
            "digest": bytes(16) if i == 0 else rng.randbytes(16),
            "ratio": f32(
                rng.uniform(-1e6, 1e6) if not edge else [0.0, -0.0, 3.4e38, float("inf")][i]
            ),
            "score": rng.uniform(-1e300, 1e300)
            if not edge
            else [5e-324, -1.0, 1e308, -float("inf")][i],
            "small": [-(2**31), 2**31 - 1, 0, -1][i] if edge else rng.randrange(-(2**31), 2**31),
            "big": [-(2**63), 2**63 - 1, 0, 1][i] if edge else rng.randrange(-(2**63), 2**63),
            "flag": rng.random() < 0.5,
            "label": ["", "ünïcødé ✓ 🚀", "a\x00b", "x" * 3000][i]
            if edge
            else f"label-{rng.random()}",
            "color": rng.choice(["RED", "GREEN", "BLUE"]),
            "tags": []
            if i == 0
            else [f"t{rng.randrange(100)}" for _ in range(rng.randrange(0, 5))],
            "address": {
                "city": rng.choice(["Lisboa", "Zürich", "東京", ""]),
                "zip": None if i % 3 == 0 else rng.randrange(0, 99999),
                "geo": {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)},
            },
            "maybe_text": None if i % 2 == 0 else f"t{i}",
            "maybe_long": None if i % 3 == 1 else rng.randrange(-(2**63), 2**63),
            "maybe_ts": None
            if i % 4 == 2
            else datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**15)),
            "maybe_amount": None
            if i % 5 == 3
            else Decimal(rng.randrange(-(10**6), 10**6)).scaleb(-3),
            "maybe_address": None
            if i % 2 == 1
            else {"city": f"c{i}", "zip": None, "geo": {"lat": 1.5, "lon": -2.25}},
            "points": [
                {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)}
                for _ in range(rng.randrange(0, 3))
            ],
        }
        if safe_path_types:
            value["attrs"] = (
                {}
                if i == 0
                else {f"k{j}": rng.randrange(-(2**63), 2**63) for j in range(rng.randrange(0, 4))}
            )
            value["maybe_color"] = None if i % 3 == 0 else rng.choice(["RED", "GREEN", "BLUE"])
        out.append(value)
    return out


def expected_row(value: dict[str, Any]) -> dict[str, Any]:
    """What a reader must get back for a produced value (Arrow's Python conversion)."""
    row = dict(value)
    if "uid" in value:
        row["uid"] = str(value["uid"])
    if "attrs" in value:
        row["attrs"] = sorted(value["attrs"].items())
    return row


def produce_with_confluent(
    settings: Settings, topic: str, schema: dict[str, Any], values: list[dict[str, Any]]
) -> int:
    """Produce `values` with confluent-kafka's AvroSerializer; returns the schema id used."""
    ensure_topic(settings, topic, partitions=3)
    client = SchemaRegistryClient(settings.registry_client_config())
    serializer = AvroSerializer(client, json.dumps(schema), conf={"auto.register.schemas": True})
    context = SerializationContext(topic, MessageField.VALUE)
    producer = Producer(settings.kafka_client_config(acks="all", **{"enable.idempotence": True}))  # type: ignore[arg-type]
    errors: list[str] = []
    first_id = None
    for value in values:
        data = serializer(value, context)
        assert data is not None and data[0] == 0
        first_id = int.from_bytes(data[1:5], "big")

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        producer.produce(topic, data, value["event_id"].encode(), on_delivery=report)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert errors == []
    assert first_id is not None
    return first_id


def count_safe_path_datums(monkeypatch: pytest.MonkeyPatch) -> list[int] | None:
    """Spy on the per-datum (safe) decoder: the list gets each call's datum count.

    None when `lakehouse.avro.decode` has no `_safe` any more (the check is then skipped).
    """
    real_safe = getattr(decode_module, "_safe", None)
    if real_safe is None:
        return None
    calls: list[int] = []

    def spy(group: Any, pending: list[int], *args: Any) -> Any:
        calls.append(len(pending))
        return real_safe(group, pending, *args)

    monkeypatch.setattr(decode_module, "_safe", spy)
    return calls


@pytest.mark.parametrize("safe_path_types", [True, False], ids=["safe-path", "bulk-path"])
def test_every_avro_type_round_trips_exactly(
    stack: Settings, safe_path_types: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = fresh_spec("types", batch=BatchLimits(max_records=120))
    schema = record_schema("AllTypes", safe_path_types=safe_path_types)
    values = make_values(300, seed=11 if safe_path_types else 12, safe_path_types=safe_path_types)
    produce_with_confluent(stack, spec.topic, schema, values)

    safe_datums = count_safe_path_datums(monkeypatch)
    report = ingest_once(stack, spec)
    if safe_path_types and safe_datums is not None:
        assert sum(safe_datums) == len(values)  # a map: the whole schema takes the safe path
    assert report.records_written == len(values)
    assert report.dead_letters == 0
    assert report.batches >= 3  # several batches: the schema is settled after the first

    table = load_catalog(stack).load_table(spec.table)  # a fresh catalog object
    types = {f.name: f.field_type for f in table.schema().fields}
    assert isinstance(types["event_time"], TimestamptzType)
    assert isinstance(types["ts_micros"], TimestamptzType)
    assert isinstance(types["maybe_ts"], TimestamptzType)
    assert isinstance(types["day"], DateType)
    assert types["amount"] == DecimalType(12, 3) == types["maybe_amount"]
    assert isinstance(types["uid"], StringType)
    assert isinstance(types["raw"], BinaryType)
    assert types["digest"] == FixedType(16)
    assert isinstance(types["ratio"], FloatType)
    assert isinstance(types["score"], DoubleType)
    assert isinstance(types["small"], IntegerType)
    assert isinstance(types["big"], LongType)
    assert isinstance(types["flag"], BooleanType)
    assert isinstance(types["color"], StringType)
    assert isinstance(types["tags"], ListType)
    assert isinstance(types["address"], StructType)
    assert isinstance(types["points"], ListType)
    if safe_path_types:
        assert isinstance(types["attrs"], MapType)
        assert isinstance(types["maybe_color"], StringType)
    spec_fields = table.spec().fields
    assert [f.name for f in spec_fields] == ["event_time_day"]

    produced = {v["event_id"]: expected_row(v) for v in values}
    rows = iceberg_rows(stack, spec)
    assert len(rows) == len(values)
    for row in rows:
        want = produced[row["event_id"]]
        got = {k: row[k] for k in want}
        if "attrs" in got:
            got["attrs"] = sorted(got["attrs"])
        # NaN-free values: a plain equality is exact, and the first mismatch is named
        for name in want:
            assert got[name] == want[name], (row["event_id"], name, got[name], want[name])
            assert type(got[name]) is type(want[name]) or want[name] is None, (
                name,
                type(got[name]),
                type(want[name]),
            )
        assert row["event_time"].tzinfo is not None and row["event_time"].utcoffset() == timedelta(
            0
        )
        assert row["ts_micros"].utcoffset() == timedelta(0)
        assert str(row["amount"].as_tuple().exponent) == "-3"  # the scale survives
        assert row["_kafka_topic"] == spec.topic
    assert_exactly_once(stack, spec, set(produced))


def test_v1_and_v2_writer_schemas_in_one_batch(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=10_000))
    ensure_topic(stack, spec.topic, partitions=2)
    client = SchemaRegistryClient(stack.registry_client_config())
    context = SerializationContext(spec.topic, MessageField.VALUE)
    serializers = {
        version: AvroSerializer(
            client, demo_schema("clicks", version).text, conf={"auto.register.schemas": True}
        )
        for version in (1, 2)
    }
    rng = random.Random(5)
    producer = Producer(stack.kafka_client_config(acks="all"))  # type: ignore[arg-type]
    produced: dict[str, dict[str, Any]] = {}
    schema_ids = set()
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    for i in range(400):
        version = 1 if rng.random() < 0.5 else 2
        value: dict[str, Any] = {
            "event_id": f"click-{i}",
            "event_time": start + timedelta(microseconds=rng.randrange(10**11)),
            "user_id": f"user-{rng.randrange(50)}",
            "session_id": f"sess-{rng.randrange(20)}",
            "page": rng.choice(["/", "/cart", "/product/p1"]),
            "product_id": rng.choice([None, "p1", "p2"]),
            "action": rng.choice(["view", "add_to_cart", "remove_from_cart", "purchase"]),
            "price": rng.choice([None, 9.99, 123.5]),
        }
        if version == 2:
            value["user_location"] = rng.choice(["Lisbon", "Porto", None])
        data = serializers[version](value, context)
        assert data is not None
        schema_ids.add((version, int.from_bytes(data[1:5], "big")))
        producer.produce(spec.topic, data, value["user_id"].encode())
        produced[value["event_id"]] = {"version": version, **value}
    assert producer.flush(60) == 0
    assert len({sid for _v, sid in schema_ids}) == 2  # two writer schemas really on the topic

    report = ingest_once(stack, spec)
    assert report.batches == 1  # both writer schemas decoded and committed in one batch
    assert report.records_written == 400 and report.dead_letters == 0

    rows = iceberg_rows(stack, spec)
    assert len(rows) == 400
    versions_seen = {1: 0, 2: 0}
    for row in rows:
        want = produced[row["event_id"]]
        versions_seen[want["version"]] += 1
        expected_location = want.get("user_location") if want["version"] == 2 else None
        assert row["user_location"] == expected_location, row["event_id"]
        for name, value in want.items():
            if name not in ("version", "user_location"):
                assert row[name] == value, (row["event_id"], name, row[name], value)
    assert versions_seen[1] > 100 and versions_seen[2] > 100
    located = [r for r in rows if r["user_location"] is not None]
    assert located and all(produced[r["event_id"]]["version"] == 2 for r in located)
    assert_exactly_once(stack, spec, set(produced))


GEO = ADDRESS["fields"][2]["type"]
PATH_CASES = {
    # Every type the bulk path claims, each field defined inline (no named reference).
    "plain": (
        [
            f
            for f in record_schema("P", safe_path_types=False)["fields"]
            if f["name"] not in ("maybe_address", "points")
        ],
        lambda v: {k: x for k, x in v.items() if k not in ("maybe_address", "points")},
    ),
    # A named type used a second time by name (polars itself says "avro-error: OutOfSpec";
    # lakehouse/avro/named.py writes the reference out in full for it).
    "named-reference": (
        [
            {"name": "event_id", "type": "string"},
            {"name": "event_time", "type": TS_MILLIS},
            {"name": "here", "type": GEO},
            {"name": "there", "type": "Geo"},
        ],
        lambda v: {
            "event_id": v["event_id"],
            "event_time": v["event_time"],
            "here": v["address"]["geo"],
            "there": v["maybe_address"]["geo"] if v["maybe_address"] else {"lat": 0.0, "lon": 0.0},
        },
    ),
    # ["null", record] with some nulls: polars leaves nulls in the required children of a
    # null struct, which the fast path fills as the safe path does before the cast.
    "nullable-record": (
        [
            {"name": "event_id", "type": "string"},
            {"name": "event_time", "type": TS_MILLIS},
            {"name": "maybe_geo", "type": ["null", GEO], "default": None},
        ],
        lambda v: {
            "event_id": v["event_id"],
            "event_time": v["event_time"],
            "maybe_geo": v["address"]["geo"] if v["maybe_text"] else None,
        },
    ),
}


@pytest.mark.parametrize(
    "case",
    ["plain", "named-reference", "nullable-record"],
)
def test_bulk_path_decodes_its_types_itself(
    stack: Settings, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema the bulk path takes must not silently fall back to the per-datum path: the
    values would be right but the throughput 50-270x lower."""
    fields, shape = PATH_CASES[case]
    schema = {"type": "record", "name": "Path", "namespace": "lakehouse.test", "fields": fields}
    spec = fresh_spec("path", batch=BatchLimits(max_records=1000))
    values = [shape(v) for v in make_values(200, seed=3, safe_path_types=False)]
    produce_with_confluent(stack, spec.topic, schema, values)
    safe_datums = count_safe_path_datums(monkeypatch)
    if safe_datums is None:
        pytest.skip("lakehouse.avro.decode._safe is gone; nothing to spy on")
    report = ingest_once(stack, spec)
    assert report.records_written == len(values)
    rows = {r["event_id"]: r for r in iceberg_rows(stack, spec)}
    for value in values:  # exact either way
        row = rows[value["event_id"]]
        assert {k: row[k] for k in value} == expected_row(value)
    assert sum(safe_datums) == 0, f"{sum(safe_datums)} of {len(values)} datums took the safe path"
