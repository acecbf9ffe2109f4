"""Exact data files read by Polars' Parquet reader, as pyiceberg's ArrowScan would read them.

Polars reads thousands of small files in one call several times faster than ArrowScan
(which projects each file by field id on its own). It is used only where the result cannot
differ: local Parquet files of a table that has only ever had one schema (so every file's
column names are the current ones), with column types that round-trip exactly through
Polars, and the batch's first file carrying the schema's field ids. The result is cast to
the Arrow schema ArrowScan gives (string/binary widths as that first file stores them);
Polars concatenates the sources in order, so a file's rows are found by the record counts
before it. The files are read into memory first (`_local`): Polars' own file reading (async
tasks and a blocking-thread pool per file) cost ~0.3 CPU-s more over 4,000 tiny files.
"""

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO, schema_to_pyarrow
from pyiceberg.manifest import DataFile, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from lakehouse.iceberg.maintenance._local import local_path

MAX_CHUNK_BYTES = 128 * 1024 * 1024
"""Input bytes (compressed, as in the manifests) read by one Polars call at most."""
MIN_CHUNK_BYTES = 4 * 1024 * 1024
"""Below this a Polars call spends more on its own setup than it saves by overlapping."""


def chunk_bytes(total: int) -> int:
    """Input bytes per Polars call for `total` bytes of input: a quarter (so that reading
    overlaps what follows), within the bounds."""
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, total // 4))


_EXACT = (
    BooleanType,
    IntegerType,
    LongType,
    FloatType,
    DoubleType,
    DateType,
    TimestampType,
    TimestamptzType,
    StringType,
    BinaryType,
)
"""Iceberg types whose Parquet → Polars → Arrow round trip is exact (no maps, decimals,
uuids, fixed, time or nested types: those go through ArrowScan)."""


def table_ok(io: FileIO, metadata: TableMetadata) -> bool:
    """Whether Polars may read this table's files (one schema ever, local FileIO, exact types)."""
    return (
        len(metadata.schemas) == 1
        and isinstance(io, PyArrowFileIO)
        and all(isinstance(field.field_type, _EXACT) for field in metadata.schema().fields)
    )


def file_ok(data_file: DataFile) -> bool:
    """Whether Polars may read this file of such a table (a local Parquet file)."""
    return (
        data_file.file_format == FileFormat.PARQUET and local_path(data_file.file_path) is not None
    )


def read_files(metadata: TableMetadata, contents: list[bytes], rows: int) -> pa.Table | None:
    """The rows of the files (their bytes, in order) through one Polars read, one chunk per
    column, with ArrowScan's Arrow schema; None when that cannot be exact (the first file's
    field ids or types differ from the schema, a column is missing, the row count is not
    `rows`): the caller reads them with ArrowScan instead."""
    if not contents:
        return None
    target = arrow_schema(metadata.schema(), contents[0])
    if target is None:
        return None
    try:
        frame = pl.read_parquet(contents, columns=target.names)
    except pl.exceptions.PolarsError:
        return None  # e.g. a file without some column: ArrowScan fills it with nulls
    if frame.height != rows:
        return None
    try:
        # one chunk per column first: Arrow conversion of 4,000 per-file chunks is 2x slower,
        # and the rows of a file or group become zero-copy slices
        return frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest()).cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


_WIDTHS = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary())


def arrow_schema(schema: Schema, sample: bytes) -> pa.Schema | None:
    """The Arrow schema ArrowScan gives this table's rows: the current schema with string and
    binary widths as the files store them (taken from the batch's first file, whose field
    ids must match the schema's), or None when the file does not look like that."""
    try:
        stored = pq.read_schema(pa.BufferReader(sample))
    except (pa.ArrowException, OSError):
        return None
    fields = []
    for field in schema_to_pyarrow(schema, include_field_ids=False):
        index = stored.get_field_index(field.name)
        if index < 0:
            return None
        found = stored.field(index)
        field_id = (found.metadata or {}).get(b"PARQUET:field_id")
        if field_id is None or int(field_id) != schema.find_field(field.name).field_id:
            return None
        if field.type in _WIDTHS:
            if found.type not in _WIDTHS:
                return None
            field = field.with_type(found.type)
        fields.append(field)
    return pa.schema(fields)
