"""Projections of decoded rows onto the table, and the Arrow ↔ Iceberg types they rest on."""

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.demo.streams import demo_schema
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.evolution import normalize_type
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS, bronze_schema
from lakehouse.schema.evolve import evolve, resolve_against
from lakehouse.schema.iceberg_types import arrow_type, iceberg_type, same_type
from lakehouse.schema.projection import conform_rows, projection

EVERY_TYPE = {
    "type": "record",
    "name": "All",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "by", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
        {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                 "scale": 3}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tm", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "lts", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["x", "y"]}},
        {"name": "opt", "type": ["null", "long"], "default": None},
        {"name": "rec", "type": {"type": "record", "name": "In", "fields": [
            {"name": "a", "type": "int"}, {"name": "n", "type": ["null", "string"]}]}},
        {"name": "arr", "type": {"type": "array", "items": "In"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "double"]}},
        {"name": "un", "type": ["int", "string"]},
    ],
}  # fmt: skip


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    return SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())


def test_iceberg_types_match_what_pyiceberg_makes_from_the_decoded_columns(
    catalog: SqlCatalog,
) -> None:
    """The contract the resolver rests on: for every Avro type the decoder maps, our Arrow →
    Iceberg type is pyiceberg's, and Iceberg → Arrow gives back the decoder's type."""
    decoded = WriterSchema.from_text(1, json.dumps(EVERY_TYPE)).arrow
    table = ensure_table(catalog, "ns.every", decoded)
    for field in decoded:
        made = table.schema().find_field(field.name).field_type
        assert same_type(iceberg_type(field.type), made), field.name
        assert arrow_type(made).equals(normalize_type(field.type)), field.name


def rows_of(writer: WriterSchema, values: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(values, schema=writer.arrow)


def test_rename_promotion_nested_add_and_missing_column_in_one_projection(
    catalog: SqlCatalog,
) -> None:
    item = {"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}]}
    v1 = WriterSchema.from_text(1, json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "int"},
        {"name": "old", "type": "string"},
        {"name": "items", "type": {"type": "array", "items": item}},
    ]}))  # fmt: skip
    v2 = WriterSchema.from_text(2, json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "long"},
        {"name": "new", "aliases": ["old"], "type": "string"},
        {"name": "items", "type": {"type": "array", "items": {**item, "fields": [
            *item["fields"], {"name": "qty", "type": ["null", "int"], "default": None}]}}},
        {"name": "extra", "type": ["null", "double"], "default": None},
    ]}))  # fmt: skip
    ensure_table(catalog, "ns.t", bronze_schema(v1.arrow))
    table = evolve(catalog, "ns.t", v2, subject="s", version=2, applied_by="t",
                   reserved=KAFKA_COLUMNS).table  # fmt: skip
    old = resolve_against(table, v1, KAFKA_COLUMNS)
    project = projection(v1.arrow, old.table_names, table.schema(), reserved=KAFKA_COLUMNS)
    out = project(rows_of(v1, [{"id": 7, "old": "x", "items": [{"sku": "a"}, {"sku": "b"}]}]))
    assert out.to_pylist() == [
        {
            "id": 7,
            "new": "x",
            "items": [{"sku": "a", "qty": None}, {"sku": "b", "qty": None}],
            "extra": None,
        }
    ]
    assert out.schema.field("id").type == pa.int64()
    new = resolve_against(table, v2, KAFKA_COLUMNS)
    assert projection(v2.arrow, new.table_names, table.schema(), reserved=KAFKA_COLUMNS).identity


def test_rows_projected_for_an_older_table_schema_follow_its_renames_at_commit(
    catalog: SqlCatalog,
) -> None:
    v1 = WriterSchema.from_text(1, json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "int"}, {"name": "dec", "type": {
            "type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1}}]}))  # fmt: skip
    table = ensure_table(catalog, "ns.c", v1.arrow)
    rows = rows_of(v1, [{"a": 1, "dec": Decimal("1.5")}])
    assert conform_rows(rows, table, table.schema().schema_id) is rows
    v2 = WriterSchema.from_text(2, json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "b", "aliases": ["a"], "type": "long"}, {"name": "dec", "type": {
            "type": "bytes", "logicalType": "decimal", "precision": 7, "scale": 1}}]}))  # fmt: skip
    newer = evolve(catalog, "ns.c", v2, subject="s", version=2, applied_by="t").table
    conformed = conform_rows(rows, newer, 0)
    assert conformed.to_pylist() == [{"b": 1, "dec": Decimal("1.5")}]
    assert conformed.schema.field("dec").type == pa.decimal128(7, 1)


@pytest.mark.parametrize("stream", ["clicks", "payments", "readings"])
def test_the_common_path_is_the_identity(catalog: SqlCatalog, stream: str) -> None:
    """A writer schema the table was made from costs nothing per batch: no rename, no cast."""
    writer = WriterSchema.from_text(1, demo_schema(stream).text)
    table = ensure_table(catalog, f"ns.{stream}", bronze_schema(writer.arrow))
    resolution = resolve_against(table, writer, KAFKA_COLUMNS)
    assert resolution.compatible and not resolution.changes
    shape = projection(writer.arrow, resolution.table_names, table.schema(), reserved=KAFKA_COLUMNS)
    assert shape.identity
