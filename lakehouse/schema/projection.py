"""Decoded rows of one writer schema → the table's column names and types (pure Arrow).

Built once per (writer schema, table schema): renames are zero-copy views (same layout, other
field names: pyarrow's cast matches struct fields by name and would null a renamed one), then
a cast only of the columns whose type differs (int→long, a nested field the writer lacks),
then null columns for table columns the writer does not write. The common case, a writer
schema the table already matches, is the identity and costs nothing per batch.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from lakehouse.errors import SchemaEvolutionError
from lakehouse.iceberg.evolution import normalize_type
from lakehouse.schema.iceberg_types import arrow_type
from lakehouse.schema.resolve import Path, renames_between


@dataclass(frozen=True)
class Projection:
    """Applies to tables decoded with one writer schema; `identity` when nothing changes."""

    renamed: pa.Schema | None
    casts: tuple[tuple[int, pa.DataType], ...]
    missing: tuple[pa.Field, ...]

    @property
    def identity(self) -> bool:
        return self.renamed is None and not self.casts and not self.missing

    def __call__(self, rows: pa.Table) -> pa.Table:
        if self.identity:
            return rows
        columns = list(rows.columns)
        names = rows.column_names
        if self.renamed is not None:
            columns = [_view(c, f.type) for c, f in zip(columns, self.renamed, strict=True)]
            names = self.renamed.names
        for index, dtype in self.casts:
            columns[index] = columns[index].cast(dtype)
        for missing in self.missing:
            columns.append(pa.nulls(rows.num_rows, missing.type))
            names = [*names, missing.name]
        return pa.Table.from_arrays(columns, names=names)


IDENTITY = Projection(None, (), ())


def projection(
    writer: pa.Schema,
    table_names: Mapping[Path, str],
    table: Schema,
    *,
    reserved: Collection[str] = (),
) -> Projection:
    """The projection of `writer`'s decoded rows onto `table` (after its changes were applied).

    `table_names` is `Resolution.table_names` from resolving against this table schema;
    `reserved` top-level columns are added later by the caller (Kafka metadata).
    """
    renamed = pa.schema([_renamed(f, table_names, ()) for f in writer])
    target = {f.name: arrow_type(f.field_type) for f in table.fields}
    casts = []
    for index, f in enumerate(renamed):
        if f.name not in target:
            raise SchemaEvolutionError(f"writer field {f.name!r} has no column in the table")
        if not normalize_type(f.type).equals(target[f.name]):
            casts.append((index, target[f.name]))
    missing = tuple(
        pa.field(name, dtype)
        for name, dtype in target.items()
        if name not in renamed.names and name not in reserved
    )
    same_names = renamed.equals(writer)
    return Projection(None if same_names else renamed, tuple(casts), missing)


def _renamed(f: pa.Field, names: Mapping[Path, str], parent: Path) -> pa.Field:
    path = (*parent, f.name)
    return f.with_name(names.get(path, f.name)).with_type(_renamed_type(f.type, names, path))


def _renamed_type(dtype: pa.DataType, names: Mapping[Path, str], path: Path) -> pa.DataType:
    if pa.types.is_struct(dtype):
        return pa.struct([_renamed(f, names, path) for f in dtype])
    if pa.types.is_list(dtype):
        element = dtype.value_field
        inner = _renamed_type(element.type, names, (*path, "element"))
        return pa.list_(element.with_type(inner))
    if pa.types.is_map(dtype):
        item = dtype.item_field
        inner = _renamed_type(item.type, names, (*path, "value"))
        return pa.map_(dtype.key_field, item.with_type(inner))
    return dtype


def _view(column: pa.ChunkedArray, dtype: pa.DataType) -> pa.ChunkedArray:
    if column.type.equals(dtype):
        return column
    return pa.chunked_array([chunk.view(dtype) for chunk in column.chunks], dtype)


def conform_rows(rows: pa.Table, table: Table, schema_id: int | None) -> pa.Table:
    """Rows made for the table's schema `schema_id`, in its current column names and types.

    For a commit that finds the table changed since its rows were projected (a column renamed
    or promoted meanwhile): renames follow the field ids. `rows` itself when nothing changed.
    """
    current = table.schema()
    if schema_id is None or schema_id == current.schema_id:
        return rows
    old = table.schemas().get(schema_id)
    if old is None:
        raise SchemaEvolutionError(f"{table.name()}: rows made for unknown schema id {schema_id}")
    return projection(rows.schema, renames_between(old, current), current)(rows)
