"""A writer schema as the decoder needs it: parsed, canonical, its Arrow schema and its path."""

import json
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
from fastavro.schema import to_parsing_canonical_form

from lakehouse.avro.arrow_types import arrow_schema
from lakehouse.avro.named import (
    MAX_EXPANDED_NODES,
    expanded_nodes,
    inline_named_types,
    reused_names,
)
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
    # The text `polars.read_avro` is given: `text`, or with named types reused by name
    # written out in full (polars cannot resolve a name reference).
    polars_text: str = ""

    @classmethod
    def from_text(cls, schema_id: int, text: str) -> "WriterSchema":
        """Parse a schema's JSON text; `DecodeError` if it is not a usable Avro record schema."""
        parsed = parse(text)
        arrow = arrow_schema(parsed)
        canonical = to_parsing_canonical_form(json.loads(text))
        reason = unsupported_by_polars(parsed)
        polars_text = text
        if not reason and reused_names(parsed):
            polars_text, reason = _inlined(parsed, arrow)
        path: DecodePath = "safe" if reason else "fast"
        return cls(schema_id, text, parsed, canonical, arrow, path, reason, polars_text)

    @property
    def fast_text(self) -> str:
        """The schema text for the fast path (`text` when `polars_text` was not set)."""
        return self.polars_text or self.text


def _inlined(parsed: Schema, arrow: pa.Schema) -> tuple[str, str]:
    """(schema text for polars, reason to take the safe path instead or '')."""
    nodes = expanded_nodes(parsed)
    if nodes > MAX_EXPANDED_NODES:
        return "", f"named types reused by name expand to {nodes} types"
    text = inline_named_types(parsed)
    # The copy must be the same schema but for names: same Arrow schema, same encoding.
    copy = parse(text)
    same_encoding = _unnamed(copy) == _unnamed(parsed)
    if arrow_schema(copy) != arrow or not same_encoding:  # pragma: no cover - a bug
        return "", "named types reused by name could not be written out"
    return text, ""


def _unnamed(schema: Schema) -> object:
    """The schema's structure without type names (what decides the binary encoding)."""
    kind = schema.type
    props = tuple(
        sorted(
            (key, json.dumps(value, sort_keys=True))
            for key, value in schema.props.items()
            if key in ("logicalType", "precision", "scale", "size", "symbols")
        )
    )
    if kind in ("record", "error"):
        inner: object = tuple((f.name, _unnamed(f.type)) for f in schema.fields)  # type: ignore[attr-defined]
    elif kind == "array":
        inner = _unnamed(schema.items)  # type: ignore[attr-defined]
    elif kind == "map":
        inner = _unnamed(schema.values)  # type: ignore[attr-defined]
    elif kind == "union":
        inner = tuple(_unnamed(b) for b in schema.schemas)  # type: ignore[attr-defined]
    else:
        inner = None
    return (kind, props, inner)


def unsupported_by_polars(schema: Schema) -> str:
    """Why `polars.read_avro` must not read this schema ('' if it may)."""
    return _check(schema, (), nested=False)


def _check(schema: Schema, stack: tuple[int, ...], *, nested: bool) -> str:
    """`nested`: inside a record field or array (not a field of the top-level record)."""
    kind = schema.type
    if logical_type(schema) == "duration":
        return "duration (polars panics)"
    if kind == "null":
        return "null type (polars cannot read it)"
    if kind == "map":
        return "map (polars panics)"
    if kind == "enum" and nested:
        return "enum inside a record or array (polars panics)"
    if kind == "union":
        branch = nullable_branch(schema)
        if branch is None:
            return "union other than [null, T]"
        if branch[0].type == "enum":
            return "nullable enum (polars panics)"
        return _check(branch[0], stack, nested=nested)
    if kind in ("record", "error"):
        if id(schema) in stack:
            return "recursive record"
        for field in schema.fields:  # type: ignore[attr-defined]
            reason = _check(field.type, (*stack, id(schema)), nested=bool(stack))
            if reason:
                return reason
        return ""
    if kind == "array":
        items = schema.items  # type: ignore[attr-defined]
        if is_zero_size(items):
            return "array of zero-size items (a bomb vector)"
        return _check(items, stack, nested=True)
    return ""
