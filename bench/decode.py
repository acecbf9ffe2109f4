"""Throughput of `decode_values` against per-message fastavro, measured in the same run.

.venv/bin/python bench/decode.py [--events 500000]
"""

import argparse
import io
import random
import time
import uuid

import fastavro
import pyarrow as pa

from lakehouse.avro import decode_values
from lakehouse.avro.testing import DictSchemaSource, encode
from lakehouse.avro.wire import frame

CLICK = {
    "type": "record",
    "name": "Click",
    "fields": [
        {"name": "event_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "user_id", "type": "long"},
        {"name": "session_id", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "referrer", "type": ["null", "string"], "default": None},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "duration_ms", "type": "int"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "CLICK"]}},
    ],
}


def events(count: int) -> list[bytes]:
    """Framed click events, built from a small pool of distinct encodings."""
    rng = random.Random(1)
    pool = []
    for i in range(5000):
        record = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "user_id": rng.randrange(10**6),
            "session_id": f"s{rng.randrange(10**5)}",
            "page": rng.choice(["/", "/cart", "/product/42", "/search?q=shoes"]),
            "referrer": rng.choice([None, "https://example.org/"]),
            "event_time": 1_760_000_000_000 + i,
            "duration_ms": rng.randrange(60_000),
            "kind": rng.choice(["VIEW", "CLICK"]),
        }
        pool.append(frame(1, encode(CLICK, record)))
    return [pool[i % len(pool)] for i in range(count)]


def baseline(values: list[bytes]) -> pa.Table:
    """Per message: fastavro.schemaless_reader, then pa.Table.from_pylist."""
    parsed = fastavro.parse_schema(CLICK)
    rows = [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, parsed) for v in values]
    return pa.Table.from_pylist(rows)


def measure(label: str, run: object, values: list[bytes]) -> float:
    started = time.perf_counter()
    run(values)  # type: ignore[operator]
    rate = len(values) / (time.perf_counter() - started)
    print(f"{label:<40} {rate:>12,.0f} records/s")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()
    values = events(args.events)
    source = DictSchemaSource({1: CLICK})
    decode_values(values[:1000], source)  # warm up
    fast = measure("decode_values (polars fast path)", lambda v: decode_values(v, source), values)
    slow = measure("fastavro per message + from_pylist", baseline, values)
    print(f"ratio: {fast / slow:.1f}x")


if __name__ == "__main__":
    main()
