"""Writer schema ↔ Iceberg table resolution: each safe change found, each unsafe one refused,
matching by field id (aliases and earlier names), on real tables in a SQLite catalog."""

import json
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IntegerType, LongType, NestedField, StringType

from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.kafka.metadata_columns import KAFKA_COLUMNS, bronze_schema
from lakehouse.schema.evolve import evolve, resolve_against, schema_sources

ITEM = {"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}]}
VALUE = {"type": "record", "name": "Val", "fields": [{"name": "a", "type": "int"}]}
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
BASE: list[dict[str, Any]] = [
    {"name": "id", "type": "int"},
    {"name": "score", "type": "float"},
    {"name": "name", "type": "string"},
    {"name": "amount", "type": DECIMAL},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
    {"name": "address", "type": {"type": "record", "name": "Addr", "fields": [
        {"name": "city", "type": "string"}]}},
    {"name": "items", "type": {"type": "array", "items": ITEM}},
    {"name": "attrs", "type": {"type": "map", "values": VALUE}},
]  # fmt: skip


def record(fields: list[dict[str, Any]]) -> str:
    return json.dumps({"type": "record", "name": "Rec", "fields": fields})


def writer(fields: list[dict[str, Any]], schema_id: int = 2) -> WriterSchema:
    return WriterSchema.from_text(schema_id, record(fields))


def with_field(name: str, **changes: Any) -> list[dict[str, Any]]:
    return [{**f, **changes} if f["name"] == name else f for f in BASE]


@pytest.fixture
def table(tmp_path: Path) -> Table:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    return ensure_table(catalog, "ns.t", bronze_schema(writer(BASE, 1).arrow))


def changes(table: Table, fields: list[dict[str, Any]]) -> list[tuple[str, str]]:
    resolution = resolve_against(table, writer(fields), KAFKA_COLUMNS)
    assert resolution.compatible, resolution.reason()
    return [(c.kind, str(c)) for c in resolution.changes]


def test_the_schema_the_table_was_made_from_needs_nothing(table: Table) -> None:
    resolution = resolve_against(table, writer(BASE), KAFKA_COLUMNS)
    assert resolution.compatible and not resolution.changes and not resolution.table_names
    assert resolution.absent == ()  # the Kafka columns are not "absent"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            [*BASE, {"name": "note", "type": ["null", "string"], "default": None}],
            [("added", "note: added as string")],
        ),
        (
            with_field(
                "address",
                type={
                    "type": "record",
                    "name": "Addr",
                    "fields": [
                        {"name": "city", "type": "string"},
                        {"name": "zip", "type": ["null", "int"], "default": None},
                    ],
                },
            ),
            [("added", "address.zip: added as int")],
        ),
        (
            with_field(
                "items",
                type={
                    "type": "array",
                    "items": {
                        **ITEM,
                        "fields": [*ITEM["fields"], {"name": "qty", "type": "int", "default": 1}],
                    },
                },
            ),
            [("added", "items.element.qty: added as int")],
        ),
        (
            with_field(
                "attrs",
                type={
                    "type": "map",
                    "values": {
                        **VALUE,
                        "fields": [
                            *VALUE["fields"],
                            {"name": "b", "type": ["null", "string"], "default": None},
                        ],
                    },
                },
            ),
            [("added", "attrs.value.b: added as string")],
        ),
        (with_field("id", type="long"), [("promoted", "id: int → long")]),
        (with_field("score", type="double"), [("promoted", "score: float → double")]),
        (
            with_field("amount", type={**DECIMAL, "precision": 14}),
            [("promoted", "amount: decimal(10, 2) → decimal(14, 2)")],
        ),
        (
            [
                {"name": "ident", "aliases": ["id"], "type": "int"},
                *[f for f in BASE if f["name"] != "id"],
            ],
            [("renamed", "id: renamed to ident")],
        ),
        (
            with_field("kind", type={"type": "enum", "name": "Kind", "symbols": ["a", "b", "c"]}),
            [],
        ),
        ([f for f in BASE if f["name"] != "name"], []),
    ],
    ids=[
        "add",
        "nested-add",
        "add-in-array-of-records",
        "add-in-map-values",
        "int-long",
        "float-double",
        "decimal-precision",
        "alias-rename",
        "enum-symbol-added",
        "field-removed",
    ],
)
def test_each_safe_change(
    table: Table, fields: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    assert changes(table, fields) == expected


def test_a_removed_field_is_reported_absent(table: Table) -> None:
    resolution = resolve_against(
        table, writer([f for f in BASE if f["name"] != "name"]), KAFKA_COLUMNS
    )
    assert resolution.absent == (("name",),)


def test_a_narrower_writer_type_needs_no_change(table: Table) -> None:
    evolve(table.catalog, "ns.t", writer(with_field("id", type="long")), subject="s", version=2,
           applied_by="test", reserved=KAFKA_COLUMNS)  # fmt: skip
    assert changes(table.refresh(), BASE) == []  # v1 (int) into the long column: a cast


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (with_field("name", type="int"), "name: string → int"),
        (with_field("id", type="string"), "id: int → string"),
        (with_field("id", type="double"), "id: int → double"),
        (with_field("score", type="int"), "score: float → int"),
        (with_field("amount", type={**DECIMAL, "scale": 3}), "decimal(10, 2) → decimal(10, 3)"),
        (with_field("amount", type={**DECIMAL, "precision": 8}), None),  # narrower: fine
        (with_field("name", type="bytes"), "name: string → binary"),
        (with_field("address", type="string"), "address: struct"),
        (with_field("items", type={"type": "map", "values": ITEM}), "items: list"),
        (
            with_field(
                "address",
                type={
                    "type": "record",
                    "name": "Addr",
                    "fields": [{"name": "city", "type": "long"}],
                },
            ),
            "address.city: string → long",
        ),
    ],
)
def test_unsafe_changes_are_refused_naming_field_and_types(
    table: Table, fields: list[dict[str, Any]], reason: str | None
) -> None:
    resolution = resolve_against(table, writer(fields), KAFKA_COLUMNS)
    if reason is None:
        assert resolution.compatible and not resolution.changes
        return
    assert not resolution.compatible
    assert reason in resolution.reason()


def test_rename_keeps_the_field_id_and_old_writers_still_land_in_it(table: Table) -> None:
    before = table.schema().find_field("id").field_id
    renamed = [{"name": "ident", "aliases": ["id"], "type": "int"}, *BASE[1:]]
    evolution = evolve(table.catalog, "ns.t", writer(renamed), subject="s", version=2,
                       applied_by="test", reserved=KAFKA_COLUMNS)  # fmt: skip
    schema = evolution.table.schema()
    assert schema.find_field("ident").field_id == before
    assert "id" not in {f.name for f in schema.fields}
    old = resolve_against(evolution.table, writer(BASE, 1), KAFKA_COLUMNS)
    assert old.compatible and not old.changes
    assert old.table_names == {("id",): "ident"}  # v1's 'id' lands in 'ident', by field id


def test_an_alias_does_not_rename_back_to_an_older_name(table: Table) -> None:
    """v3 renamed id→ident; a v2 that called it 'code' (alias 'id') matches by the old name
    but does not rename the column again."""
    v3 = [{"name": "ident", "aliases": ["id"], "type": "int"}, *BASE[1:]]
    table = evolve(table.catalog, "ns.t", writer(v3), subject="s", version=3, applied_by="t",
                   reserved=KAFKA_COLUMNS).table  # fmt: skip
    v2 = [{"name": "code", "aliases": ["id"], "type": "int"}, *BASE[1:]]
    resolution = resolve_against(table, writer(v2), KAFKA_COLUMNS)
    assert resolution.changes == () and resolution.table_names == {("code",): "ident"}


def test_required_column_made_optional(tmp_path: Path) -> None:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    catalog.create_namespace("ns")
    table = catalog.create_table(
        "ns.req",
        Schema(
            NestedField(1, "id", LongType(), required=True),
            NestedField(2, "name", StringType(), required=True),
            NestedField(3, "n", IntegerType(), required=True),
        ),
    )
    fields = [
        {"name": "id", "type": "long"},
        {"name": "name", "type": ["null", "string"], "default": None},
    ]
    got = changes(table, fields)
    assert got == [
        ("made_optional", "name: required → optional"),
        ("made_optional", "n: required → optional"),  # no longer written
    ]
    evolve(catalog, "ns.req", writer(fields), subject="s", version=2, applied_by="t")
    schema = catalog.load_table("ns.req").schema()
    assert schema.find_field("id").required
    assert not schema.find_field("name").required and not schema.find_field("n").required


def test_evolve_records_the_writer_schema_behind_the_new_iceberg_schema(table: Table) -> None:
    fields = [*BASE, {"name": "note", "type": ["null", "string"], "default": None}]
    evolution = evolve(table.catalog, "ns.t", writer(fields, 7), subject="s-value", version=3,
                       applied_by="run r1", reserved=KAFKA_COLUMNS)  # fmt: skip
    assert evolution.schema_id_before == 0 and evolution.schema_id == 1
    source = schema_sources(evolution.table)[1]
    assert (source.subject, source.version, source.schema_id, source.applied_by) == (
        "s-value", 3, 7, "run r1"
    )  # fmt: skip
    again = evolve(table.catalog, "ns.t", writer(fields, 7), subject="s-value", version=3,
                   applied_by="run r2", reserved=KAFKA_COLUMNS)  # fmt: skip
    assert again.applied == () and again.schema_id == 1  # applied once


def test_an_incompatible_writer_changes_nothing(table: Table) -> None:
    evolution = evolve(table.catalog, "ns.t", writer(with_field("name", type="int")),
                       subject="s", version=2, applied_by="t", reserved=KAFKA_COLUMNS)  # fmt: skip
    assert not evolution.resolution.compatible and evolution.applied == ()
    assert table.refresh().schema().schema_id == 0
