"""Avro decoding, the untrusted boundary: Confluent frames → Arrow rows or dead letters."""

from lakehouse.avro.arrow_types import arrow_schema
from lakehouse.avro.decode import DecodeResult, Failure, decode_values
from lakehouse.avro.registry import RegistrySchemaSource, SchemaSource
from lakehouse.avro.wire import Frame, frame, parse_frame
from lakehouse.avro.writer_schema import WriterSchema

__all__ = [
    "DecodeResult",
    "Failure",
    "Frame",
    "RegistrySchemaSource",
    "SchemaSource",
    "WriterSchema",
    "arrow_schema",
    "decode_values",
    "frame",
    "parse_frame",
]
