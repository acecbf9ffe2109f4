"""Helpers for tests and demos: an in-memory schema source and framed fastavro encodings."""

import io
import json
from collections.abc import Mapping
from typing import Any

import fastavro

from lakehouse.avro.schema import JsonSchema
from lakehouse.avro.wire import frame
from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.errors import DecodeError


class DictSchemaSource:
    """A `SchemaSource` over a dict of schema id → Avro schema (JSON text or object)."""

    def __init__(self, schemas: Mapping[int, JsonSchema]) -> None:
        self._schemas = {
            schema_id: WriterSchema.from_text(
                schema_id, schema if isinstance(schema, str) else json.dumps(schema)
            )
            for schema_id, schema in schemas.items()
        }

    def writer_schema(self, schema_id: int) -> WriterSchema:
        """The writer schema, or `DecodeError('unknown-schema-id')`."""
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise DecodeError("unknown-schema-id", f"schema id {schema_id} not found") from None


def encode(schema: JsonSchema, record: Mapping[str, Any]) -> bytes:
    """One plain Avro datum written by fastavro."""
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else schema)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, record)
    return out.getvalue()


def encode_frame(schema_id: int, schema: JsonSchema, record: Mapping[str, Any]) -> bytes:
    """A Confluent-framed datum."""
    return frame(schema_id, encode(schema, record))
