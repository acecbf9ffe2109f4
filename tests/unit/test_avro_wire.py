"""Confluent framing: every way a frame can be malformed."""

import pytest

from lakehouse.avro.wire import Frame, frame, parse_frame
from lakehouse.errors import DecodeError


def test_round_trip() -> None:
    assert parse_frame(frame(42, b"\x02")) == Frame(42, b"\x02")


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "empty-value"),
        (b"", "empty-value"),
        (b"\x01\x00\x00\x00\x01\x02", "bad-magic-byte"),
        (b"{", "bad-magic-byte"),
        (b"\x00", "short-frame"),
        (b"\x00\x00\x00\x00\x01", "short-frame"),
        (b"\x00" + b"\x00" * 100, "oversize"),
    ],
)
def test_malformed(value: bytes | None, kind: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_frame(value, max_value_bytes=64)
    assert info.value.kind == kind
