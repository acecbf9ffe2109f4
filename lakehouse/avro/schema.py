"""Parsing writer schemas and walking them: logical types, zero-size types, recursion."""

import json
import warnings
from typing import Any

import avro.errors
import avro.schema

from lakehouse.errors import DecodeError

Schema = avro.schema.Schema
JsonSchema = str | dict[str, Any] | list[Any]


def parse(schema: JsonSchema | Schema) -> Schema:
    """An Apache `avro` schema from JSON text, a JSON object or an already parsed schema."""
    if isinstance(schema, Schema):
        return schema
    text = schema if isinstance(schema, str) else json.dumps(schema)
    with warnings.catch_warnings():
        # local-timestamp-* are unknown to avro 1.12.2; they are read as plain longs.
        warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
        try:
            return avro.schema.parse(text)
        except (avro.errors.AvroException, ValueError, TypeError) as exc:
            raise DecodeError("unknown-schema-id", f"invalid Avro schema: {exc}") from exc


def logical_type(schema: Schema) -> str | None:
    """The `logicalType` attribute of a schema, known to avro or not."""
    value = schema.get_prop("logicalType")
    return value if isinstance(value, str) else None


def nullable_branch(schema: Schema) -> tuple[Schema, int] | None:
    """For a union `[null, T]` or `[T, null]`: (T, index of null). None for any other union."""
    branches = schema.schemas  # type: ignore[attr-defined]
    if len(branches) != 2:
        return None
    kinds = [b.type for b in branches]
    if kinds.count("null") != 1:
        return None
    null_index = kinds.index("null")
    return branches[1 - null_index], null_index


def is_zero_size(schema: Schema, seen: frozenset[int] = frozenset()) -> bool:
    """Whether a value of this type can take zero bytes (null, fixed(0), records of such)."""
    if id(schema) in seen:
        return False
    if schema.type == "null":
        return True
    if schema.type == "fixed":
        return schema.size == 0  # type: ignore[attr-defined,no-any-return]
    if schema.type in ("record", "error"):
        inner = seen | {id(schema)}
        return all(is_zero_size(f.type, inner) for f in schema.fields)  # type: ignore[attr-defined]
    return False


def strip_logical_types(schema: Any) -> Any:
    """A copy of a JSON schema without `logicalType` attributes (physical types only)."""
    if isinstance(schema, list):
        return [strip_logical_types(item) for item in schema]
    if isinstance(schema, dict):
        return {
            key: strip_logical_types(value) for key, value in schema.items() if key != "logicalType"
        }
    return schema


def decimal_params(schema: Schema) -> tuple[int, int] | None:
    """(precision, scale) of a decimal Arrow can hold, else None (read as plain bytes)."""
    if logical_type(schema) != "decimal" or schema.type not in ("bytes", "fixed"):
        return None
    try:
        precision = int(schema.get_prop("precision"))  # type: ignore[call-overload]
        scale = int(schema.get_prop("scale") or 0)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    if 0 < precision <= 38 and 0 <= scale <= precision:
        return precision, scale
    return None
