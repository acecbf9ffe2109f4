"""Rows to uncommitted data files of a table, the way pyiceberg's append writes them.

pyiceberg's `_dataframe_to_data_files` splits the rows by partition with a filter and a copy
per partition, and prepares its Parquet writer again for every call. A micro-batch almost
always falls in one partition (a day of event time), so here the partition values are
computed once and, when they are all the same, the rows are written as they are; only a
batch that spans partitions is split. Writers are prepared once per table layout (schema,
spec, write properties) and reused by every batch of a process. A column is
dictionary-encoded only where that is smaller than its plain values (parquet-mr's rule, as
Java Iceberg writes; `parquet_dictionary`).
"""

import threading
from collections import OrderedDict
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import bin_pack_arrow_table
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import TableProperties
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.utils.properties import property_as_int

from lakehouse.iceberg.data_file_writer import DataFileWriter

_WRITERS: "OrderedDict[tuple[object, ...], DataFileWriter]" = OrderedDict()
_WRITERS_LOCK = threading.Lock()
_MAX_WRITERS = 16


def write_data_files(io: FileIO, metadata: TableMetadata, rows: pa.Table) -> list[DataFile]:
    """`rows` as Parquet data files of the table's current schema and spec (uncommitted),
    one or more per partition, each near the table's target file size."""
    if rows.num_rows == 0:
        return []
    writer = _writer(io, metadata)
    writer.prepare(rows.schema)
    target = property_as_int(
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    assert target is not None  # a default is given
    files = []
    for key, part in _partitions(metadata.spec(), metadata.schema(), rows):
        for batches in bin_pack_arrow_table(part, target):
            files.append(writer.write(pa.Table.from_batches(batches, rows.schema), key))
    return files


def _writer(io: FileIO, metadata: TableMetadata) -> DataFileWriter:
    """A writer for the table's layout, made once per layout (a few ms of Python each)."""
    writes = tuple(sorted((k, v) for k, v in metadata.properties.items() if k.startswith("write.")))
    key: tuple[object, ...] = (
        metadata.table_uuid,
        metadata.location,
        metadata.current_schema_id,
        metadata.default_spec_id,
        writes,
        id(io),
    )
    with _WRITERS_LOCK:
        found = _WRITERS.get(key)
        if found is not None:
            _WRITERS.move_to_end(key)
            return found
    # Dictionaries only where they are smaller than the plain values (not for ids, offsets
    # or event times): ~15% less Parquet CPU per batch and ~10% smaller files.
    made = DataFileWriter(io, metadata, dictionary_where_it_pays=True)
    with _WRITERS_LOCK:
        _WRITERS[key] = made
        while len(_WRITERS) > _MAX_WRITERS:
            _WRITERS.popitem(last=False)
    return made


def _partitions(
    spec: PartitionSpec, schema: Schema, rows: pa.Table
) -> Iterator[tuple[PartitionKey | None, pa.Table]]:
    """(partition key, its rows) for each partition the rows fall in, in first-seen order."""
    if spec.is_unpartitioned():
        yield None, rows
        return
    values = []
    for field in spec.fields:
        source = schema.find_field(field.source_id)
        name = schema.find_column_name(field.source_id)
        if name is None:
            raise ValueError(f"no column for partition source field id {field.source_id}")
        column = _column(rows, name)
        values.append(field.transform.pyarrow_transform(source.field_type)(column))
    keys = pa.table({str(i): v for i, v in enumerate(values)})
    distinct = keys.group_by(keys.column_names, use_threads=False).aggregate([]).to_pylist()
    for combination in distinct:
        key = PartitionKey(
            field_values=[
                PartitionFieldValue(field=field, value=combination[str(i)])
                for i, field in enumerate(spec.fields)
            ],
            partition_spec=spec,
            schema=schema,
        )
        if len(distinct) == 1:
            yield key, rows  # the usual micro-batch: no filter, no copy
            continue
        mask = None
        for i, value in enumerate(values):
            wanted = combination[str(i)]
            match = pc.is_null(value) if wanted is None else pc.equal(value, wanted)
            mask = match if mask is None else pc.and_(mask, match)
        yield key, rows.filter(mask)


def _column(rows: pa.Table, dotted: str) -> pa.ChunkedArray | pa.Array:
    """The column at a dotted path (a partition source may be nested in a struct)."""
    first, *rest = dotted.split(".")
    column: pa.ChunkedArray | pa.Array = rows.column(first)
    for part in rest:
        column = pc.struct_field(column, part)
    return column
