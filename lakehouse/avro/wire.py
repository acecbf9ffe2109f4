"""The Confluent wire format: magic byte 0x00, a 4-byte big-endian schema id, one Avro datum."""

from dataclasses import dataclass

from lakehouse.errors import DecodeError

MAGIC = 0
HEADER_BYTES = 5
DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed frame: the writer schema id and the Avro datum bytes."""

    schema_id: int
    datum: bytes


def parse_frame(value: bytes | None, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> Frame:
    """Split a Kafka value into schema id and datum, or raise `DecodeError` with its kind."""
    if not value:
        raise DecodeError("empty-value", "the message has no value (tombstone or empty)")
    size = len(value)
    if size > max_value_bytes:
        raise DecodeError("oversize", f"value of {size} bytes exceeds {max_value_bytes}")
    if value[0] != MAGIC:
        raise DecodeError("bad-magic-byte", f"first byte is 0x{value[0]:02x}, expected 0x00")
    if size <= HEADER_BYTES:
        raise DecodeError("short-frame", f"frame of {size} bytes has no datum")
    schema_id = int.from_bytes(value[1:HEADER_BYTES], "big", signed=True)
    return Frame(schema_id, bytes(value[HEADER_BYTES:]))


def frame(schema_id: int, datum: bytes) -> bytes:
    """Build a Confluent frame (for producers and tests)."""
    return bytes([MAGIC]) + schema_id.to_bytes(4, "big", signed=True) + datum
