"""Avro types to the Arrow types the Iceberg tables take (pyiceberg 0.12)."""

import pyarrow as pa

from lakehouse.avro.schema import (
    JsonSchema,
    Schema,
    decimal_params,
    logical_type,
    nullable_branch,
    parse,
)
from lakehouse.errors import DecodeError

UTC_MICROS = pa.timestamp("us", tz="UTC")
LOCAL_MICROS = pa.timestamp("us")

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}

_LOGICAL: dict[str, pa.DataType] = {
    "timestamp-millis": UTC_MICROS,
    "timestamp-micros": UTC_MICROS,
    "local-timestamp-millis": LOCAL_MICROS,
    "local-timestamp-micros": LOCAL_MICROS,
    "date": pa.date32(),
    "time-millis": pa.time64("us"),
    "time-micros": pa.time64("us"),
    "uuid": pa.string(),
}


def arrow_schema(avro_schema: JsonSchema | Schema) -> pa.Schema:
    """The Arrow schema of a top-level Avro record: one field per record field."""
    schema = parse(avro_schema)
    if schema.type not in ("record", "error"):
        raise DecodeError("unknown-schema-id", f"top-level schema is {schema.type}, not a record")
    return pa.schema([_field(f.name, f.type, ()) for f in schema.fields])  # type: ignore[attr-defined]


def arrow_type(schema: Schema) -> pa.DataType:
    """The Arrow type of one Avro type; a `[null, T]` union maps to T (nullable)."""
    return _type(schema, ())


def _field(name: str, schema: Schema, stack: tuple[int, ...]) -> pa.Field:
    nullable = schema.type == "null" or (
        schema.type == "union" and any(b.type == "null" for b in schema.schemas)  # type: ignore[attr-defined]
    )
    return pa.field(name, _type(schema, stack), nullable=nullable)


def _type(schema: Schema, stack: tuple[int, ...]) -> pa.DataType:
    kind = schema.type
    logical = logical_type(schema)
    decimal = decimal_params(schema)
    if decimal is not None:
        return pa.decimal128(*decimal)
    if logical in _LOGICAL and kind in ("int", "long", "string"):
        return _LOGICAL[logical]
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if kind in ("record", "error"):
        if id(schema) in stack:
            name = schema.fullname  # type: ignore[attr-defined]
            raise DecodeError("unknown-schema-id", f"recursive record {name} has no Arrow type")
        inner = (*stack, id(schema))
        return pa.struct([_field(f.name, f.type, inner) for f in schema.fields])  # type: ignore[attr-defined]
    if kind == "enum":
        return pa.string()
    if kind == "fixed":
        return pa.binary(schema.size)  # type: ignore[attr-defined]
    if kind == "array":
        return pa.list_(_field("element", schema.items, stack))  # type: ignore[attr-defined]
    if kind == "map":
        return pa.map_(pa.string(), _field("value", schema.values, stack))  # type: ignore[attr-defined]
    if kind == "union":
        branch = nullable_branch(schema)
        if branch is not None:
            return _type(branch[0], stack)
        # Other unions: Iceberg's convention, a struct of the branch tag and one field per branch.
        options = schema.schemas  # type: ignore[attr-defined]
        fields = [pa.field("tag", pa.int32(), nullable=False)]
        fields += [
            pa.field(f"field{i}", _type(option, stack))
            for i, option in enumerate(options)
            if option.type != "null"
        ]
        return pa.struct(fields)
    raise DecodeError("unknown-schema-id", f"unsupported Avro type {kind}")
