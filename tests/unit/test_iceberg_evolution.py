"""Schema evolution rules on real tables."""

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from lakehouse.errors import SchemaEvolutionError
from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.evolution import evolve_schema, normalize_rows, normalize_schema

BASE = pa.schema(
    [
        ("i", pa.int32()),
        ("f", pa.float32()),
        ("s", pa.string()),
        ("st", pa.struct([("a", pa.int32())])),
    ]
)


@pytest.fixture
def table(tmp_path: Path) -> Table:
    cat = SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    return ensure_table(cat, "ns.t", BASE)


def types(table: Table) -> dict[str, str]:
    return {f.name: str(f.field_type) for f in table.refresh().schema().fields}


def test_adds_optional_columns_and_nested_fields(table: Table) -> None:
    wider = pa.schema([*BASE, pa.field("new", pa.string(), nullable=False)]).set(
        3, pa.field("st", pa.struct([("a", pa.int32()), ("b", pa.string())]))
    )
    assert evolve_schema(table, wider)
    schema = table.refresh().schema()
    assert schema.find_field("new").optional
    assert schema.find_field("st.b").optional


def test_promotions_are_allowed(table: Table) -> None:
    assert evolve_schema(table, pa.schema([("i", pa.int64()), ("f", pa.float64())]))
    assert types(table)["i"] == "long" and types(table)["f"] == "double"


def test_same_or_narrower_schema_changes_nothing(table: Table) -> None:
    schema_id = table.schema().schema_id
    assert not evolve_schema(table, pa.schema([("i", pa.int16()), ("s", pa.large_string())]))
    assert table.refresh().schema().schema_id == schema_id


@pytest.mark.parametrize(
    ("field", "dtype"),
    [("s", pa.int64()), ("i", pa.string()), ("f", pa.int32()), ("st", pa.string())],
)
def test_other_changes_are_refused_naming_the_field(
    table: Table, field: str, dtype: pa.DataType
) -> None:
    before = table.metadata_location
    with pytest.raises(SchemaEvolutionError, match=field):
        evolve_schema(table, pa.schema([(field, dtype)]))
    assert table.refresh().metadata_location == before


def test_normalize_makes_fields_optional_and_timestamps_us() -> None:
    schema = pa.schema(
        [
            pa.field("t", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("l", pa.list_(pa.field("x", pa.timestamp("ns"), nullable=False))),
        ]
    )
    out = normalize_schema(schema)
    assert out.field("t").nullable and out.field("t").type == pa.timestamp("us", tz="UTC")
    assert out.field("l").type.value_field.nullable
    assert out.field("l").type.value_type == pa.timestamp("us")
    rows = pa.table({"t": pa.array([1_500], pa.timestamp("ns"))})
    assert normalize_rows(rows)["t"].to_pylist()[0].microsecond == 1


def test_decimal_precision_widens_at_the_same_scale_only(tmp_path: Path) -> None:
    cat = SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/d.db", warehouse=tmp_path.as_uri())
    table = ensure_table(cat, "ns.d", pa.schema([("d", pa.decimal128(10, 2))]))
    assert evolve_schema(table, pa.schema([("d", pa.decimal128(14, 2))]))
    assert types(table)["d"] == "decimal(14, 2)"
    with pytest.raises(SchemaEvolutionError, match="'d'"):  # pyiceberg 0.12 itself lets it by
        evolve_schema(table, pa.schema([("d", pa.decimal128(16, 3))]))
