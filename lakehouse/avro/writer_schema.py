"""A writer schema as the decoder needs it: parsed, canonical, its Arrow schema and its path."""

import json
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
from fastavro.schema import to_parsing_canonical_form

from lakehouse.avro.arrow_types import arrow_schema
from lakehouse.avro.schema import Schema, is_zero_size, logical_type, nullable_branch, parse

DecodePath = Literal["fast", "safe"]


@dataclass(frozen=True)
class WriterSchema:
    """One registered writer schema and how to decode its datums."""

    schema_id: int
    text: str
    parsed: Schema
    canonical: str
    arrow: pa.Schema
    path: DecodePath
    reason: str

    @classmethod
    def from_text(cls, schema_id: int, text: str) -> "WriterSchema":
        """Parse a schema's JSON text; `DecodeError` if it is not a usable Avro record schema."""
        parsed = parse(text)
        arrow = arrow_schema(parsed)
        canonical = to_parsing_canonical_form(json.loads(text))
        reason = unsupported_by_polars(parsed)
        return cls(schema_id, text, parsed, canonical, arrow, "safe" if reason else "fast", reason)


def unsupported_by_polars(schema: Schema) -> str:
    """Why `polars.read_avro` must not read this schema ('' if it may)."""
    return _check(schema, ())


def _check(schema: Schema, stack: tuple[int, ...]) -> str:
    kind = schema.type
    if logical_type(schema) == "duration":
        return "duration (polars panics)"
    if kind == "null":
        return "null type (polars cannot read it)"
    if kind == "map":
        return "map (polars panics)"
    if kind == "union":
        branch = nullable_branch(schema)
        if branch is None:
            return "union other than [null, T]"
        if branch[0].type == "enum":
            return "nullable enum (polars panics)"
        return _check(branch[0], stack)
    if kind in ("record", "error"):
        if id(schema) in stack:
            return "recursive record"
        for field in schema.fields:  # type: ignore[attr-defined]
            reason = _check(field.type, (*stack, id(schema)))
            if reason:
                return reason
        return ""
    if kind == "array":
        items = schema.items  # type: ignore[attr-defined]
        if is_zero_size(items):
            return "array of zero-size items (a bomb vector)"
        return _check(items, stack)
    return ""
