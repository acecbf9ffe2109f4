"""Malformed Kafka values for testing the decoder's dead-letter path.

Each kind is made from a good Confluent frame (`0x00`, 4-byte big-endian schema id, Avro
datum) deterministically, and is marked on the Kafka message by the header
`MALFORMED_HEADER` so tests can find it. `DEAD_LETTER_KIND` says how the ingest decoder
must classify each one (see docs/architecture.md, dead-letter kinds).
"""

import io
import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import fastavro

MAGIC = 0
HEADER_SIZE = 5
MALFORMED_HEADER = "lakehouse-demo-malformed"

# Ids near the top of the signed 32-bit range: registries allocate ids from 1 upwards.
UNKNOWN_SCHEMA_ID_BASE = 2_000_000_000


class MalformedKind(StrEnum):
    """The four ways a demo value is malformed."""

    BAD_MAGIC = "bad-magic"
    UNKNOWN_SCHEMA_ID = "unknown-schema-id"
    TRUNCATED = "truncated"
    NOT_AVRO = "not-avro"


DEAD_LETTER_KIND = {
    MalformedKind.BAD_MAGIC: "bad-magic-byte",
    MalformedKind.UNKNOWN_SCHEMA_ID: "unknown-schema-id",
    MalformedKind.TRUNCATED: "corrupt-datum",
    MalformedKind.NOT_AVRO: "bad-magic-byte",  # JSON text starts with '{' (0x7b)
}


def frame(schema_id: int, datum: bytes) -> bytes:
    """A Confluent wire-format frame."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big") + datum


def schema_id_of(value: bytes) -> int:
    """The schema id of a Confluent frame."""
    return int.from_bytes(value[1:HEADER_SIZE], "big")


def bad_magic(good: bytes, n: int = 0) -> bytes:
    """`good` with its magic byte replaced by one of 2..255 (chosen by `n`).

    Not 1: confluent-kafka reads magic byte 1 as its GUID framing (a 16-byte schema GUID).
    """
    return bytes([2 + n % 254]) + good[1:]


def unknown_schema_id(good: bytes, n: int = 0) -> bytes:
    """`good` pointing at schema id `UNKNOWN_SCHEMA_ID_BASE + n % 1000`, never issued."""
    return frame(UNKNOWN_SCHEMA_ID_BASE + n % 1000, good[HEADER_SIZE:])


def truncated(good: bytes, parsed_schema: Any, n: int = 0) -> bytes:
    """`good` cut inside its datum so that reading it runs out of bytes.

    The frame keeps its header and at least one datum byte (so it is not a short frame);
    the cut point is chosen by `n` among the points where fastavro fails to read.
    """
    datum = good[HEADER_SIZE:]
    if len(datum) < 2:
        raise ValueError("datum too short to truncate")
    cuts = [cut for cut in range(1, len(datum)) if not _reads(parsed_schema, datum[:cut])]
    if not cuts:
        raise ValueError("no truncation of this datum fails to read")
    return good[:HEADER_SIZE] + datum[: cuts[n % len(cuts)]]


def not_avro(value: dict[str, Any]) -> bytes:
    """The event as JSON text: what a misconfigured producer would send."""
    return json.dumps(value, default=str, separators=(",", ":")).encode()


def make(
    kind: MalformedKind, good: bytes, value: dict[str, Any], parsed_schema: Any, n: int = 0
) -> bytes:
    """A malformed value of `kind`, made from the good frame of `value`."""
    makers: dict[MalformedKind, Callable[[], bytes]] = {
        MalformedKind.BAD_MAGIC: lambda: bad_magic(good, n),
        MalformedKind.UNKNOWN_SCHEMA_ID: lambda: unknown_schema_id(good, n),
        MalformedKind.TRUNCATED: lambda: truncated(good, parsed_schema, n),
        MalformedKind.NOT_AVRO: lambda: not_avro(value),
    }
    return makers[MalformedKind(kind)]()


def _reads(parsed_schema: Any, datum: bytes) -> bool:
    try:
        fastavro.schemaless_reader(io.BytesIO(datum), parsed_schema)
    except Exception:
        return False
    return True
