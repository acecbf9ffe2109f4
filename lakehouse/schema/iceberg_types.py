"""Arrow types as the decoder makes them ↔ Iceberg types, without field ids.

`iceberg_type` gives the Iceberg type pyiceberg would create from a decoded Arrow column (a
contract test holds it to pyiceberg's own conversion); `arrow_type` gives back the Arrow type
the decoder makes for it, every field nullable, so a projection can compare and cast by type.
"""

import itertools
from collections.abc import Iterator

import pyarrow as pa
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FixedType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

from lakehouse.errors import SchemaEvolutionError

_PRIMITIVE_TO_ARROW: dict[IcebergType, pa.DataType] = {
    BooleanType(): pa.bool_(),
    IntegerType(): pa.int32(),
    LongType(): pa.int64(),
    FloatType(): pa.float32(),
    DoubleType(): pa.float64(),
    StringType(): pa.string(),
    BinaryType(): pa.binary(),
    DateType(): pa.date32(),
    TimeType(): pa.time64("us"),
    TimestampType(): pa.timestamp("us"),
    TimestamptzType(): pa.timestamp("us", tz="UTC"),
}


def iceberg_type(dtype: pa.DataType, ids: Iterator[int] | None = None) -> IcebergType:
    """The Iceberg type of an Arrow type; nested fields optional, ids from `ids` (placeholders:
    `UpdateSchema.add_column` assigns fresh ones). SchemaEvolutionError when Iceberg has none."""
    ids = ids if ids is not None else itertools.count(1)
    if pa.types.is_boolean(dtype):
        return BooleanType()
    if pa.types.is_integer(dtype):
        return LongType() if dtype.bit_width > 32 else IntegerType()
    if pa.types.is_float32(dtype):
        return FloatType()
    if pa.types.is_float64(dtype):
        return DoubleType()
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return StringType()
    if pa.types.is_fixed_size_binary(dtype):
        return FixedType(dtype.byte_width)
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return BinaryType()
    if pa.types.is_decimal(dtype):
        return DecimalType(dtype.precision, dtype.scale)
    if pa.types.is_date32(dtype):
        return DateType()
    if pa.types.is_time64(dtype) or pa.types.is_time32(dtype):
        return TimeType()
    if pa.types.is_timestamp(dtype):
        return TimestamptzType() if dtype.tz else TimestampType()
    if pa.types.is_struct(dtype):
        return StructType(
            *(
                NestedField(next(ids), f.name, iceberg_type(f.type, ids), required=False)
                for f in dtype
            )
        )
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        element_id = next(ids)
        return ListType(element_id, iceberg_type(dtype.value_type, ids), element_required=False)
    if pa.types.is_map(dtype):
        key_id, value_id = next(ids), next(ids)
        return MapType(
            key_id,
            iceberg_type(dtype.key_type, ids),
            value_id,
            iceberg_type(dtype.item_type, ids),
            value_required=False,
        )
    raise SchemaEvolutionError(f"Arrow type {dtype} has no Iceberg type")


def arrow_type(itype: IcebergType) -> pa.DataType:
    """The Arrow type the decoder makes for values of this Iceberg type (nested fields nullable)."""
    if itype in _PRIMITIVE_TO_ARROW:
        return _PRIMITIVE_TO_ARROW[itype]
    if isinstance(itype, DecimalType):
        return pa.decimal128(itype.precision, itype.scale)
    if isinstance(itype, FixedType):
        return pa.binary(len(itype))
    if isinstance(itype, StructType):
        return pa.struct([pa.field(f.name, arrow_type(f.field_type)) for f in itype.fields])
    if isinstance(itype, ListType):
        return pa.list_(pa.field("element", arrow_type(itype.element_type)))
    if isinstance(itype, MapType):
        key = pa.field("key", arrow_type(itype.key_type), nullable=False)
        return pa.map_(key, pa.field("value", arrow_type(itype.value_type)))
    raise SchemaEvolutionError(f"Iceberg type {itype} has no Arrow type in bronze")


def same_type(a: IcebergType, b: IcebergType) -> bool:
    """Equal types, ignoring field ids and whether nested fields are required."""
    if isinstance(a, StructType) and isinstance(b, StructType):
        return len(a.fields) == len(b.fields) and all(
            x.name == y.name and same_type(x.field_type, y.field_type)
            for x, y in zip(a.fields, b.fields, strict=True)
        )
    if isinstance(a, ListType) and isinstance(b, ListType):
        return same_type(a.element_type, b.element_type)
    if isinstance(a, MapType) and isinstance(b, MapType):
        return same_type(a.key_type, b.key_type) and same_type(a.value_type, b.value_type)
    return a == b
