"""Schema evolution at commit time: add optional columns, widen int→long, float→double and
decimal precision (same scale).

Anything else (narrowing, a type change, a column made required) raises
`SchemaEvolutionError` naming the field, and nothing is committed.
"""

import pyarrow as pa
from pyiceberg.exceptions import ValidationError
from pyiceberg.schema import Schema, index_by_id
from pyiceberg.table import Table, Transaction
from pyiceberg.types import DecimalType, DoubleType, FloatType, IcebergType, IntegerType, LongType

from lakehouse.errors import SchemaEvolutionError


def widens(old: IcebergType, new: IcebergType) -> bool:
    """Iceberg's type promotions: int → long, float → double, decimal(P, S) → decimal(P', S)
    with P' > P. (pyiceberg's own `promote` also takes string ↔ binary and, in 0.12, any
    decimal scale: not used to decide.)"""
    if (old, new) in {(IntegerType(), LongType()), (FloatType(), DoubleType())}:
        return True
    return (
        isinstance(old, DecimalType)
        and isinstance(new, DecimalType)
        and old.scale == new.scale
        and old.precision < new.precision
    )


def normalize_type(dtype: pa.DataType) -> pa.DataType:
    """`dtype` with nanosecond timestamps as microseconds and every nested field nullable."""
    if pa.types.is_timestamp(dtype) and dtype.unit == "ns":
        return pa.timestamp("us", tz=dtype.tz)
    if pa.types.is_struct(dtype):
        return pa.struct([_normalize_field(dtype.field(i)) for i in range(dtype.num_fields)])
    if pa.types.is_large_list(dtype):
        return pa.large_list(_normalize_field(dtype.value_field))
    if pa.types.is_list(dtype):
        return pa.list_(_normalize_field(dtype.value_field))
    if pa.types.is_map(dtype):
        return pa.map_(
            dtype.key_field.with_type(normalize_type(dtype.key_type)),
            _normalize_field(dtype.item_field),
        )
    return dtype


def _normalize_field(field: pa.Field) -> pa.Field:
    return field.with_type(normalize_type(field.type)).with_nullable(True)


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """The schema Iceberg gets: all fields optional, timestamps in microseconds."""
    return pa.schema([_normalize_field(f) for f in schema], metadata=schema.metadata)


def normalize_rows(rows: pa.Table) -> pa.Table:
    """`rows` with nanosecond timestamps truncated to microseconds (Iceberg v2 has no ns)."""
    target = pa.schema(
        [f.with_type(normalize_type(f.type)) for f in rows.schema], metadata=rows.schema.metadata
    )
    return rows if target.equals(rows.schema) else rows.cast(target, safe=False)


def evolve_schema(target: Transaction | Table, arrow_schema: pa.Schema) -> bool:
    """Stage the columns `arrow_schema` adds or widens; True if the schema changed.

    A `Table` gets the change committed on its own; a `Transaction` gets it staged, to be
    committed with the rest of it. Raises SchemaEvolutionError when the change is not one of:
    new optional column, int→long, float→double. The transaction must then be discarded.
    """
    if isinstance(target, Table):
        tx = target.transaction()
        changed = evolve_schema(tx, arrow_schema)
        if changed:
            tx.commit_transaction()
        return changed
    before = target.table_metadata.schema()
    if fits_schema(before, arrow_schema):  # the common case; update_schema costs ~20 ms
        return False
    try:
        with target.update_schema() as update:
            update.union_by_name(normalize_schema(arrow_schema))
    except (ValidationError, ValueError, TypeError) as exc:
        raise SchemaEvolutionError(f"schema change refused: {exc}") from exc
    after = target.table_metadata.schema()
    if after.schema_id == before.schema_id:
        return False
    _check_allowed(before, after)
    return True


def _plain(dtype: pa.DataType) -> pa.DataType:
    """`dtype` without the large/small distinction Iceberg does not make."""
    dtype = normalize_type(dtype)
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    if pa.types.is_large_list(dtype):
        return pa.list_(dtype.value_field.with_type(_plain(dtype.value_type)))
    if pa.types.is_list(dtype):
        return pa.list_(dtype.value_field.with_type(_plain(dtype.value_type)))
    if pa.types.is_struct(dtype):
        return pa.struct([f.with_type(_plain(f.type)) for f in dtype])
    if pa.types.is_map(dtype):
        return pa.map_(_plain(dtype.key_type), _plain(dtype.item_type))
    return dtype


def fits_schema(schema: Schema, arrow_schema: pa.Schema) -> bool:
    """True when every field of `arrow_schema` is already in `schema` with the same type."""
    current = schema.as_arrow()
    for field in arrow_schema:
        index = current.get_field_index(field.name)
        if index < 0:
            return False
        if not _plain(current.field(index).type).equals(_plain(field.type)):
            return False
    return True


def _check_allowed(before: Schema, after: Schema) -> None:
    old_fields = index_by_id(before)
    for field_id, new in index_by_id(after).items():
        name = after.find_column_name(field_id) or new.name
        old = old_fields.get(field_id)
        if old is None:
            if new.required:
                raise SchemaEvolutionError(f"column {name!r}: a new column must be optional")
            continue
        if new.required and not old.required:
            raise SchemaEvolutionError(f"column {name!r}: cannot become required")
        changed = old.field_type.is_primitive and old.field_type != new.field_type
        if changed and not widens(old.field_type, new.field_type):
            raise SchemaEvolutionError(
                f"column {name!r}: cannot change {old.field_type} to {new.field_type}"
            )
