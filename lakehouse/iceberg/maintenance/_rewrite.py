"""Read exact data files and write each group of them back as one file.

Writing is `DataFileWriter` (pyiceberg's `write_file` with its per-table setup done once:
field ids, column metrics, file naming), given each group's partition directly: a group
holds files of one partition of the current spec, so the rows need no re-partitioning
(pyiceberg's `_determine_partitions` would group-by and filter the whole table again to
find that one partition). Groups of an older spec go through `_dataframe_to_data_files`.
Files are written on a pool of threads while the next chunk of groups is read.

Reading has three paths:
- Groups whose files were all read while planning (`_prefetch`) are sliced out of those
  batches and written first, in the order their batches are ready.
- Polars' Parquet reader over the bytes of the exact files of a whole chunk of groups (up
  to `MAX_CHUNK_BYTES` of input) where that cannot differ from pyiceberg's field-id
  projection (see `_polars_read`), cut into the groups by their files' record counts.
  Chunks are a quarter of the input (4-128 MiB) so that reading overlaps writing.
  Either way each group's rows are then checked to be all of its partition (the spec's
  transforms, as pyiceberg's writer computes partitions); a group that fails the check,
  like one Polars cannot read, is read again by ArrowScan.
- pyiceberg's `ArrowScan` (projection by field id onto the current schema) otherwise.
"""

import contextlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionField, PartitionKey, partition_record_value
from pyiceberg.table import FileScanTask, Table, TableProperties
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import (
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    YearTransform,
)
from pyiceberg.typedef import Record
from pyiceberg.types import DoubleType, FloatType, IcebergType

from lakehouse.errors import LakehouseError
from lakehouse.iceberg.data_file_writer import DataFileWriter
from lakehouse.iceberg.maintenance._avro import complete
from lakehouse.iceberg.maintenance._files import delete_all
from lakehouse.iceberg.maintenance._local import local_path, read_local
from lakehouse.iceberg.maintenance._polars_read import (
    chunk_bytes,
    file_ok,
    read_files,
    table_ok,
)
from lakehouse.iceberg.maintenance._prefetch import Prefetch
from lakehouse.iceberg.maintenance.planning import FileGroup

_ONE_FILE = str(2**62)
"""Target size given to pyiceberg's writer so a group (already packed by size) stays one file."""


@dataclass(frozen=True)
class _KnownPartition(PartitionKey):
    """A partition key given as the partition record itself (the group's, as in its
    manifests) rather than derived from row values."""

    record: Record

    @cached_property
    def partition(self) -> Record:
        return self.record


def rewrite_groups(
    table: Table, groups: Sequence[FileGroup], prefetch: Prefetch | None = None
) -> list[list[DataFile]]:
    """Each group's rows, written as new data files in the table's current spec (in the
    order of `groups`). Groups read while planning (`prefetch`) are written first; then
    chunks of the other groups are read one after the other while the previous chunk's
    files are written on a pool of threads (Parquet encoding releases the GIL); a chunk is
    read only once the one before the previous is written (bounded memory).
    On any failure every file written is deleted and the error raised."""
    metadata = table.metadata
    writer = (
        DataFileWriter(table.io, metadata, dictionary_where_it_pays=True)
        if DataFileWriter.applies(metadata)
        else None
    )
    checks = _PartitionChecks(metadata)
    by_index: dict[int, Future[list[DataFile]]] = {}
    in_flight: deque[list[Future[list[DataFile]]]] = deque()

    def submit(indexes: list[int], tables: list[pa.Table]) -> None:
        batch = [
            _submit(pool, writer, table, groups[i], rows)
            for i, rows in zip(indexes, tables, strict=True)
        ]
        by_index.update(zip(indexes, batch, strict=True))
        in_flight.append(batch)

    def make_room() -> None:
        """At most two read units in memory: the one being written, the one being read."""
        while len(in_flight) > 1:
            wait(in_flight.popleft())

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        try:
            rest = list(range(len(groups)))
            if prefetch is not None:
                rest = _write_prefetched(prefetch, groups, checks, submit)
            slow: list[int] = []
            for chunk, polars_ok in _chunks(table, metadata, groups, rest, _chunk_bytes(groups)):
                make_room()
                tables = (
                    _read_chunk(metadata, [groups[i] for i in chunk], checks) if polars_ok else None
                )
                if tables is None:
                    slow.extend(chunk)
                    continue
                submit(chunk, tables)
            for index in slow:
                make_room()
                submit([index], [_read_with_arrowscan(table, metadata, groups[index])])
            return [by_index[i].result() for i in range(len(groups))]
        except BaseException:
            for future in by_index.values():
                with contextlib.suppress(BaseException):
                    delete_all(table.io, [f.file_path for f in future.result()])
            raise


def _write_prefetched(
    prefetch: Prefetch,
    groups: Sequence[FileGroup],
    checks: "_PartitionChecks",
    submit: Callable[[list[int], list[pa.Table]], None],
) -> list[int]:
    """Submit the groups whose files were all read while planning, in the order their
    batches are decoded; returns the indexes of the others (to be read the usual way)."""
    ready: list[tuple[int, int]] = []
    rest: list[int] = []
    for index, group in enumerate(groups):
        batch = prefetch.batch_of(group)
        if batch is None:
            rest.append(index)
        else:
            ready.append((batch, index))
    for _, index in sorted(ready):
        rows = prefetch.rows(groups[index])
        if rows is None or not checks.holds(groups[index], rows):
            rest.append(index)
            continue
        submit([index], [rows])
    return sorted(rest)


def _chunk_bytes(groups: Sequence[FileGroup]) -> int:
    """A quarter of the input (so reading overlaps writing), within the bounds."""
    return chunk_bytes(sum(g.bytes for g in groups))


def _submit(
    pool: ThreadPoolExecutor,
    writer: DataFileWriter | None,
    table: Table,
    group: FileGroup,
    rows: pa.Table,
) -> Future[list[DataFile]]:
    metadata = table.metadata
    if writer is None or group.spec_id != metadata.default_spec_id or rows.num_rows == 0:
        return pool.submit(_checked, table, group, rows, lambda: _repartitioned(table, rows))
    spec = metadata.spec()
    key = (
        None
        if spec.is_unpartitioned()
        else _KnownPartition(
            field_values=[], partition_spec=spec, schema=metadata.schema(), record=group.partition
        )
    )
    writer.prepare(rows.schema)
    return pool.submit(_checked, table, group, rows, lambda: [writer.write(rows, key)])


def _checked(
    table: Table, group: FileGroup, rows: pa.Table, write: Callable[[], list[DataFile]]
) -> list[DataFile]:
    """`write()`'s files, deleted again and an error raised if the row counts differ."""
    written = write()
    if sum(f.record_count for f in written) != group.rows or rows.num_rows != group.rows:
        delete_all(table.io, [f.file_path for f in written])
        raise LakehouseError(
            f"compaction read {rows.num_rows} rows and wrote "
            f"{sum(f.record_count for f in written)} for {group.rows} planned "
            f"(partition {group.partition_path!r}); nothing committed"
        )
    return written


def _repartitioned(table: Table, rows: pa.Table) -> list[DataFile]:
    """Rows of files of an older spec, written partitioned under the current one (or a
    table whose write format is not Parquet) through pyiceberg's `_dataframe_to_data_files`."""
    metadata = table.metadata
    properties = {**metadata.properties, TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: _ONE_FILE}
    writer_metadata = metadata.model_copy(update={"properties": properties})
    return list(
        _dataframe_to_data_files(
            table_metadata=writer_metadata, df=rows, io=table.io, write_uuid=uuid.uuid4()
        )
    )


def _chunks(
    table: Table,
    metadata: TableMetadata,
    groups: Sequence[FileGroup],
    indexes: list[int],
    chunk_bytes: int,
) -> Iterator[tuple[list[int], bool]]:
    """Of `indexes`, those of groups Polars may read together (up to `chunk_bytes`), with
    True; and of the groups Polars cannot read exactly, one at a time, with False."""
    polars_table = table_ok(table.io, metadata)
    chunk: list[int] = []
    size = 0
    for index in indexes:
        group = groups[index]
        if not (polars_table and all(file_ok(f) for f in group.files)):
            yield [index], False
            continue
        if chunk and size + group.bytes > chunk_bytes:
            yield chunk, True
            chunk, size = [], 0
        chunk.append(index)
        size += group.bytes
    if chunk:
        yield chunk, True


def _read_chunk(
    metadata: TableMetadata, groups: list[FileGroup], checks: "_PartitionChecks"
) -> list[pa.Table] | None:
    """The groups' rows through one Polars read of the files' bytes (None when Polars cannot
    read them exactly, or a group's rows are not all of its partition: the caller falls back
    to ArrowScan)."""
    files = [(local_path(f.file_path), f.file_size_in_bytes) for g in groups for f in g.files]
    if not files or any(path is None for path, _ in files):
        return None
    try:
        contents = [read_local(path, size) for path, size in files if path is not None]
    except OSError:
        return None  # e.g. a missing file: ArrowScan raises pyiceberg's error
    rows = read_files(metadata, contents, sum(g.rows for g in groups))
    del contents
    if rows is None:
        return None
    tables = []
    offset = 0
    for group in groups:
        tables.append(rows.slice(offset, group.rows))
        offset += group.rows
    if not all(checks.holds(g, t) for g, t in zip(groups, tables, strict=True)):
        return None
    return tables


class _PartitionChecks:
    """Whether a group's rows all belong to its partition: the spec's transforms applied to
    the rows give the group's partition values (what pyiceberg's `_determine_partitions`
    computes when it writes). Polars reads the files' bytes in order, so each group's slice
    is its files' rows; this checks what a mistake there would break: rows written under
    another partition. (Rows swapped between groups of one partition change no data.)

    Order-preserving transforms (identity, year, month, day, hour) of a non-floating column
    are applied to the column's minimum and maximum only: if both give the partition value,
    every value between them does (~10x cheaper than transforming every row)."""

    def __init__(self, metadata: TableMetadata) -> None:
        self._schema = metadata.schema()
        self._specs = metadata.specs()
        self._fields: dict[int, list[_FieldCheck] | None] = {}

    def _for(self, spec_id: int) -> "list[_FieldCheck] | None":
        if spec_id not in self._fields:
            try:
                fields = []
                for field in self._specs[spec_id].fields:
                    source = self._schema.find_field(field.source_id)
                    name = self._schema.find_column_name(field.source_id)
                    if name is None:
                        raise ValueError(f"no column for partition source {field.source_id}")
                    fields.append(_FieldCheck.of(field, name, source.field_type))
                self._fields[spec_id] = fields
            except (KeyError, ValueError, NotImplementedError):
                self._fields[spec_id] = None
        return self._fields[spec_id]

    def holds(self, group: FileGroup, rows: pa.Table) -> bool:
        fields = self._for(group.spec_id)
        if fields is None:
            return False
        if rows.num_rows == 0:
            return True
        try:
            for position, check in enumerate(fields):
                value = check.value(rows.column(check.name))
                if value is _MIXED:
                    return False
                value = partition_record_value(check.field, value, self._schema)
                if value != group.partition[position]:
                    return False
        except (pa.ArrowException, ValueError, TypeError, NotImplementedError):
            return False
        return True


_ORDER_PRESERVING = (IdentityTransform, YearTransform, MonthTransform, DayTransform, HourTransform)
_MIXED = object()
"""A column whose rows fall into more than one partition."""


@dataclass(frozen=True)
class _FieldCheck:
    field: PartitionField
    name: str
    transform: Callable[[Any], Any]
    by_bounds: bool
    """Whether the transform preserves order: then the bounds decide for every row."""

    @classmethod
    def of(cls, field: PartitionField, name: str, source_type: IcebergType) -> "_FieldCheck":
        """The check of a partition field over its source column `name` of `source_type`."""
        return cls(
            field,
            name,
            field.transform.pyarrow_transform(source_type),
            isinstance(field.transform, _ORDER_PRESERVING)
            and not isinstance(source_type, FloatType | DoubleType),
        )

    def value(self, column: pa.ChunkedArray) -> Any:
        """The one transformed value of every row (None for all-null rows), or `_MIXED`."""
        if self.by_bounds:
            nulls = column.null_count
            if nulls == len(column):
                return None
            if nulls:
                return _MIXED
            bounds = pc.min_max(column)
            column = pa.chunked_array([pa.array([bounds["min"], bounds["max"]], column.type)])
        values = pc.unique(self.transform(column))
        return values[0].as_py() if len(values) == 1 else _MIXED


def _read_with_arrowscan(table: Table, metadata: TableMetadata, group: FileGroup) -> pa.Table:
    for data_file in group.files:
        complete(data_file)  # ArrowScan gets data files as a scan plan gives them: whole
    tasks = [FileScanTask(f) for f in group.files]  # a list: ArrowScan iterates it twice
    schema = metadata.schema()
    return ArrowScan(metadata, table.io, schema, AlwaysTrue()).to_table(tasks).combine_chunks()
