"""The fast path: a group's datums wrapped in an in-memory Avro container file for polars.

All datums go in ONE block: polars spends about 24 µs per block, so a block per datum
runs at 40k records/s. A bad datum may then shift its neighbours, so the result is taken
only if `canonical.exact_rows` proves every row exact: each row's canonical size equals its
datum's length, which, since no row can take fewer bytes than its canonical size and the
block holds exactly the sum of the lengths, forces every row to start where its datum
starts. Otherwise the caller splits the group and tries again.

polars gives the children of a null struct (a `[null, record]` that is null) null values,
which a required child field cannot hold (the cast refuses them): they are replaced by the
empty values `Table.from_pylist` (the safe path) puts there, so both paths build the same
arrays, and the Arrow schema keeps required children in an optional struct as Iceberg has.
"""

import io
import os
from collections.abc import Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars.exceptions import PanicException

from lakehouse.avro.canonical import datum_bytes, exact_rows, zigzag
from lakehouse.avro.writer_schema import WriterSchema

_MAGIC = b"Obj\x01"


class FastPathError(Exception):
    """polars could not read the group (some datum in it is bad or unsupported)."""


def container(schema_text: str, datums: pa.LargeBinaryArray | Sequence[bytes]) -> bytes:
    """An Avro object container file (codec null) holding the datums in one block."""
    sync = os.urandom(16)
    parts = [_MAGIC, zigzag(2)]
    for key, value in ((b"avro.schema", schema_text.encode()), (b"avro.codec", b"null")):
        parts += [zigzag(len(key)), key, zigzag(len(value)), value]
    parts += [zigzag(0), sync]
    body = datum_bytes(datums)
    parts += [zigzag(len(datums)), zigzag(len(body)), body, sync]
    return b"".join(parts)


def read_fast(writer: WriterSchema, datums: pa.LargeBinaryArray) -> pa.Table:
    """The datums decoded in the writer's Arrow schema, every row proven exact.

    Raises `FastPathError` for any failure (including polars panics) or any row not proven.
    """
    try:
        frame = pl.read_avro(io.BytesIO(container(writer.fast_text, datums)))
        raw = frame.to_arrow()
        if raw.num_rows != len(datums):
            raise FastPathError(f"polars read {raw.num_rows} rows of {len(datums)}")
        exact = exact_rows(raw, writer.parsed, datums)
        if not pc.all(exact).as_py():
            raise FastPathError("some datum was not read exactly")
        table = _fill_holes(raw.select(writer.arrow.names), writer.arrow).cast(writer.arrow)
        table.validate(full=True)
    except FastPathError:
        raise
    except (Exception, PanicException) as exc:  # polars panics are BaseExceptions
        raise FastPathError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    return table


def _fill_holes(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table with every null directly under a null struct made the empty value.

    That is what `Table.from_pylist` builds for a null struct, required children or not.
    Nulls in a required field under a valid parent are left for the cast to refuse.
    """
    if not any(_has_struct(f.type) for f in schema):
        return table
    relaxed = pa.schema([f.with_type(_relaxed(f.type)) for f in schema])
    table = table.cast(relaxed)
    columns = [
        _fill(table.column(i).combine_chunks(), f.type) if _has_struct(f.type) else table.column(i)
        for i, f in enumerate(schema)
    ]
    return pa.Table.from_arrays(columns, schema=relaxed)


def _has_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return True
    if pa.types.is_list(kind):
        return _has_struct(kind.value_type)
    return False


def _relaxed(kind: pa.DataType) -> pa.DataType:
    """The type with every nested field nullable (a cast target polars' output always fits)."""
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_relaxed(f.type)).with_nullable(True) for f in kind])
    if pa.types.is_list(kind):
        value = kind.value_field
        return pa.list_(value.with_type(_relaxed(value.type)).with_nullable(True))
    return kind


def _fill(array: pa.Array, target: pa.DataType) -> pa.Array:
    """`array` (of `_relaxed(target)`) with holes under null structs filled, per `target`."""
    if pa.types.is_list(target) and _has_struct(target.value_type):
        values = _fill(array.values, target.value_type)
        mask = array.is_null() if array.null_count else None
        return pa.ListArray.from_arrays(array.offsets, values, type=array.type, mask=mask)
    if not pa.types.is_struct(target):
        return array
    parent_null = array.is_null()
    children = []
    for i, field in enumerate(target):
        child = _fill(array.field(i), field.type)
        if child.null_count and array.null_count:
            holes = pc.and_(child.is_null(), parent_null)
            child = pc.if_else(holes, _empty(child.type), child)
        children.append(child)
    return pa.StructArray.from_arrays(
        children, fields=list(array.type), mask=parent_null if array.null_count else None
    )


def _empty(kind: pa.DataType) -> pa.Scalar:
    """The value `Table.from_pylist` puts in a field under a null struct (0, '', [], ...)."""
    holder = pa.array([None], pa.struct([pa.field("value", kind, nullable=False)]))
    return holder.field(0)[0]
