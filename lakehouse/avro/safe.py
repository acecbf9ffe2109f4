"""The safe path: one datum at a time with the Apache `avro` package, strictly.

Strict where polars and fastavro are lax: negative or out-of-range union and enum
indexes, negative lengths, collections larger than the bytes left, overlong varints and
invalid UTF-8 raise; zero-size collection items are capped; the datum must be consumed
exactly. Logical types are stripped before reading and applied here, so the values match
the fast path's after the same Arrow cast.
"""

import io
import json
from decimal import Decimal, InvalidOperation
from typing import Any

import avro.errors
import avro.io

from lakehouse.avro.schema import (
    Schema,
    decimal_params,
    logical_type,
    nullable_branch,
    parse,
    strip_logical_types,
)
from lakehouse.errors import DecodeError

DEFAULT_MAX_ZERO_SIZE_ITEMS = 100_000

_MICROS_PER = {"timestamp-millis": 1000, "local-timestamp-millis": 1000, "time-millis": 1000}


class _Tagged(tuple[int, Any]):
    """A value of a multi-type union with its branch index."""


class _StrictReader(avro.io.DatumReader):  # type: ignore[misc]
    """DatumReader with a tighter cap on zero-size collection items, keeping union branches."""

    def __init__(self, schema: Schema, max_zero_size_items: int) -> None:
        super().__init__(schema, schema)
        self.max_zero_size_items = max_zero_size_items

    def _ensure_collection_available(self, *args: Any) -> Any:
        # avro 1.12.2: (decoder, existing, count, min_bytes, zero_byte_limit, structural_limit)
        *head, zero_byte_limit, structural_limit = args
        limit = min(zero_byte_limit, self.max_zero_size_items)
        return super()._ensure_collection_available(*head, limit, structural_limit)  # type: ignore[call-arg]

    def read_union(self, writers_schema: Any, readers_schema: Any, decoder: Any) -> object:
        if nullable_branch(writers_schema) is not None:
            return super().read_union(writers_schema, readers_schema, decoder)
        index = int(decoder.read_long())
        if not 0 <= index < len(writers_schema.schemas):
            raise avro.errors.InvalidAvroBinaryEncoding(f"union index {index} out of range")
        branch = writers_schema.schemas[index]
        if branch.type == "null":
            return None
        return _Tagged((index, self.read_data(branch, branch, decoder)))


class SafeDecoder:
    """Decodes single datums of one writer schema into Arrow-ready Python values."""

    def __init__(self, schema: Schema, max_zero_size_items: int = DEFAULT_MAX_ZERO_SIZE_ITEMS):
        self.schema = schema
        physical = parse(strip_logical_types(json.loads(str(schema))))
        self._reader = _StrictReader(physical, max_zero_size_items)

    def decode(self, datum: bytes) -> dict[str, Any]:
        """One record as a dict of Arrow-ready values; `DecodeError` if the datum is bad."""
        stream = io.BytesIO(datum)
        try:
            raw = self._reader.read(avro.io.BinaryDecoder(stream))
        except (avro.errors.AvroException, UnicodeDecodeError, ValueError, EOFError) as exc:
            raise DecodeError("corrupt-datum", f"{type(exc).__name__}: {exc}"[:500]) from exc
        left = len(datum) - stream.tell()
        if left:
            raise DecodeError("trailing-bytes", f"{left} bytes after the datum")
        return _value(self.schema, raw)  # type: ignore[no-any-return]


def _value(schema: Schema, raw: Any) -> Any:
    """Apply logical types and shape collections the way Arrow takes them."""
    kind = schema.type
    logical = logical_type(schema)
    if kind == "union":
        if raw is None:
            return None
        branch = nullable_branch(schema)
        if branch is not None:
            return _value(branch[0], raw)
        index, inner = raw
        fields: dict[str, Any] = {"tag": index}
        for i, option in enumerate(schema.schemas):  # type: ignore[attr-defined]
            if option.type != "null":
                fields[f"field{i}"] = _value(option, inner) if i == index else None
        return fields
    if kind in ("record", "error"):
        return {f.name: _value(f.type, raw[f.name]) for f in schema.fields}  # type: ignore[attr-defined]
    if kind == "array":
        return [_value(schema.items, item) for item in raw]  # type: ignore[attr-defined]
    if kind == "map":
        return [(key, _value(schema.values, item)) for key, item in raw.items()]  # type: ignore[attr-defined]
    decimal = decimal_params(schema)
    if decimal is not None:
        return _decimal(raw, *decimal)
    if logical in _MICROS_PER and kind in ("int", "long"):
        return raw * _MICROS_PER[logical]
    return raw


def _decimal(raw: bytes, precision: int, scale: int) -> Decimal:
    unscaled = int.from_bytes(raw, "big", signed=True)
    if abs(unscaled) >= 10**precision:
        raise DecodeError(
            "corrupt-datum", f"decimal {unscaled}e-{scale} exceeds precision {precision}"
        )
    try:
        return Decimal(unscaled).scaleb(-scale)
    except InvalidOperation as exc:  # pragma: no cover - scaleb of an int cannot fail
        raise DecodeError("corrupt-datum", str(exc)) from exc
