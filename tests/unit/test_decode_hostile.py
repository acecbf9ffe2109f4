"""Hostile and malformed datums: dead-lettered fast, in bounded memory, neighbours intact."""

import resource
import time
import tracemalloc
from typing import Any

import pytest

from lakehouse.avro import decode_values
from lakehouse.avro.canonical import zigzag
from lakehouse.avro.testing import DictSchemaSource, encode, encode_frame
from lakehouse.avro.wire import frame

EVENT = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "page", "type": ["null", "string"]},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "CLICK"]}},
        {"name": "n", "type": "int"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "flag", "type": "boolean"},
    ],
}
EMPTY = {"type": "record", "name": "Empty", "fields": []}
BOMBS = {
    "type": "record",
    "name": "Bombs",
    "fields": [
        {"name": "nulls", "type": {"type": "array", "items": "null"}},
        {"name": "empties", "type": {"type": "array", "items": EMPTY}},
    ],
}
MAPS = {
    "type": "record",
    "name": "Maps",
    "fields": [{"name": "m", "type": {"type": "map", "values": "null"}}],
}
SOURCE = DictSchemaSource({1: EVENT, 2: BOMBS, 3: MAPS})


def event(i: int) -> dict[str, Any]:
    return {"id": i, "page": f"/p{i}", "kind": "CLICK", "n": i, "tags": ["a"], "flag": True}


def head(page: bytes = b"\x02\x04/p") -> bytes:
    """id=1 then the page union (index byte + string), as written by hand."""
    return zigzag(1) + page


TAIL = zigzag(1) + zigzag(5) + zigzag(0) + b"\x01"  # kind=CLICK, n=5, tags=[], flag=true

HOSTILE: dict[str, tuple[int, bytes, str]] = {
    "negative union index": (1, zigzag(1) + zigzag(-1) + zigzag(2) + b"/p" + TAIL, "corrupt-datum"),
    "union index 2": (1, zigzag(1) + zigzag(2) + zigzag(2) + b"/p" + TAIL, "corrupt-datum"),
    "negative enum index": (
        1,
        head() + zigzag(-1) + zigzag(5) + zigzag(0) + b"\x01",
        "corrupt-datum",
    ),
    "enum index too big": (
        1,
        head() + zigzag(7) + zigzag(5) + zigzag(0) + b"\x01",
        "corrupt-datum",
    ),
    "overlong varint": (1, b"\xff" * 11 + b"\x01" + b"\x00" + TAIL, "corrupt-datum"),
    "negative string length": (
        1,
        zigzag(1) + zigzag(1) + zigzag(-5) + b"/p" + TAIL,
        "corrupt-datum",
    ),
    "huge string length": (
        1,
        zigzag(1) + zigzag(1) + zigzag(2**40) + b"/p" + TAIL,
        "corrupt-datum",
    ),
    "invalid utf-8": (1, zigzag(1) + zigzag(1) + zigzag(2) + b"\xff\xfe" + TAIL, "corrupt-datum"),
    "int beyond int32": (
        1,
        head() + zigzag(1) + zigzag(2**32 + 2**30) + zigzag(0) + b"\x01",
        "corrupt-datum",
    ),
    "long beyond int64": (1, b"\xff" * 9 + b"\x02" + b"\x00" + TAIL, "corrupt-datum"),
    "huge array of strings": (
        1,
        head() + zigzag(1) + zigzag(5) + zigzag(2**27) + b"\x00",
        "corrupt-datum",
    ),
    "negative array count": (
        1,
        head() + zigzag(1) + zigzag(5) + zigzag(-(2**27)) + zigzag(1) + b"\x00",
        "corrupt-datum",
    ),
    "trailing bytes": (1, encode(EVENT, event(0)) + b"\x00", "trailing-bytes"),
    "trailing valid record": (1, encode(EVENT, event(0)) * 2, "trailing-bytes"),
    "truncated": (1, encode(EVENT, event(0))[:-3], "corrupt-datum"),
    "2^27 nulls in 5 bytes": (2, zigzag(2**27) + b"\x00\x00", "corrupt-datum"),
    "2^27 empty records": (2, zigzag(0) + zigzag(2**27) + b"\x00", "corrupt-datum"),
    "2^27 map entries of null": (3, zigzag(2**27) + b"\x00", "corrupt-datum"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_datum_is_dead_lettered_and_neighbours_unchanged(name: str) -> None:
    schema_id, datum, kind = HOSTILE[name]
    good = [encode_frame(1, EVENT, event(i)) for i in range(20)]
    values = [*good[:10], frame(schema_id, datum), *good[10:]]
    tracemalloc.start()
    started = time.monotonic()
    result = decode_values(values, SOURCE)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(f.index, f.kind) for f in result.failures] == [(10, kind)], result.failures
    assert result.table.to_pylist()[:20] == [event(i) for i in range(20)]
    assert result.row_index.to_pylist() == [i for i in range(21) if i != 10]
    assert elapsed < 5, elapsed  # a guard against bombs, not a benchmark
    assert peak < 50 * 2**20, peak


def test_process_memory_stays_bounded_under_bombs() -> None:
    """Rust allocations are invisible to tracemalloc: check the process high-water mark."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    values = [frame(sid, datum) for sid, datum, _ in HOSTILE.values()] * 20
    result = decode_values(values, SOURCE)
    assert len(result.failures) == len(values)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 300 * 1024


def test_every_malformed_kind_in_one_batch() -> None:
    good = encode_frame(1, EVENT, event(1))
    values = [
        None,
        b"",
        b"\x01" + good[1:],
        good[:5],
        frame(99, encode(EVENT, event(2))),
        frame(1, encode(EVENT, event(3))[:-2]),
        good + b"\x00",
        b"\x00" * 100,
        good,
    ]
    result = decode_values(values, SOURCE, max_value_bytes=64)
    kinds = [(f.index, f.kind, f.schema_id) for f in result.failures]
    assert kinds == [
        (0, "empty-value", None),
        (1, "empty-value", None),
        (2, "bad-magic-byte", None),
        (3, "short-frame", None),
        (4, "unknown-schema-id", 99),
        (5, "corrupt-datum", 1),
        (6, "trailing-bytes", 1),
        (7, "oversize", None),
    ]
    assert result.row_index.to_pylist() == [8]
    assert result.table.to_pylist() == [event(1)]


def test_all_bad_batch_gives_an_empty_table() -> None:
    result = decode_values([None, b"\x00\x00\x00\x00\x01\x00\x00"], SOURCE)
    assert result.table.num_rows == 0
    assert len(result.failures) == 2


def test_many_bad_datums_among_many_good() -> None:
    values = [encode_frame(1, EVENT, event(i)) for i in range(1000)]
    bad = set(range(3, 1000, 37))
    for i in bad:
        values[i] = values[i] + b"\x00"
    result = decode_values(values, SOURCE)
    assert {f.index for f in result.failures} == bad
    assert result.table.column("id").to_pylist() == [i for i in range(1000) if i not in bad]
