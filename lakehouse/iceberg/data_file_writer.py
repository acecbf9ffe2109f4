"""Data files written as pyiceberg's `write_file` writes them, minus its per-file setup.

`write_file` rebuilds, for every file, what depends only on the table: the sanitized
schema, the configuration (read from disk), the location provider, the Parquet writer
options, the statistics plan and the column-path → field-id mapping (~3 ms a file, Python
under the GIL, so the Parquet encoding of other files waits). `DataFileWriter` prepares
them once (per compaction run, per table layout for ingest's staged files) and then does per
file exactly what `write_file` does:
`_to_requested_schema` onto the file schema (field ids), pyarrow's `ParquetWriter` with the
table's options and row-group limit, statistics through pyiceberg's
`data_file_statistics_from_parquet_metadata`, the same `DataFile` fields and file naming.

With `dictionary_where_it_pays` (compaction) only the columns whose dictionary is smaller
than their plain values are dictionary-encoded (see `parquet_dictionary`): the same rows,
schema, field ids and column statistics as `write_file` gives, in other encodings (so other
file and column sizes).
"""

import itertools
import uuid
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    _get_parquet_writer_kwargs,
    _to_requested_schema,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
    pyarrow_to_schema,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionKey
from pyiceberg.schema import Schema, sanitize_column_names
from pyiceberg.table import DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE, TableProperties
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.typedef import Record
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

from lakehouse.iceberg.parquet_dictionary import dictionary_columns


class DataFileWriter:
    """Writes Arrow tables as Parquet data files of the table's current schema and spec."""

    def __init__(
        self, io: FileIO, metadata: TableMetadata, *, dictionary_where_it_pays: bool = False
    ) -> None:
        properties = metadata.properties
        table_schema = metadata.schema()
        sanitized = sanitize_column_names(table_schema)
        self._io = io
        self._metadata = metadata
        self._table_schema = table_schema
        self._file_schema = sanitized if sanitized != table_schema else table_schema
        self._format_model = FileFormatFactory.get(FileFormat.PARQUET)
        self._locations = load_location_provider(metadata.location, properties)
        self._downcast = Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False
        self._kwargs = _get_parquet_writer_kwargs(properties)
        self._dictionary_where_it_pays = dictionary_where_it_pays
        self._row_group_size = property_as_int(
            properties,
            TableProperties.PARQUET_ROW_GROUP_LIMIT,
            TableProperties.PARQUET_ROW_GROUP_LIMIT_DEFAULT,
        )
        self._stats_plan = compute_statistics_plan(self._file_schema, properties)
        self._id_mapping = parquet_path_to_id_mapping(self._file_schema)
        self._task_schemas: dict[pa.Schema, Schema] = {}
        self._write_uuid = uuid.uuid4()
        self._task_ids = itertools.count()

    @staticmethod
    def applies(metadata: TableMetadata) -> bool:
        """Whether the table writes Parquet (what this writer writes)."""
        configured = metadata.properties.get(
            TableProperties.WRITE_FILE_FORMAT, TableProperties.WRITE_FILE_FORMAT_DEFAULT
        )
        return FileFormat(configured) == FileFormat.PARQUET

    def _task_schema(self, arrow: pa.Schema) -> Schema:
        """The Iceberg schema of Arrow rows (pyiceberg's `pyarrow_to_schema`, ~3 ms) once per
        distinct Arrow schema, with the table's name mapping as `write_file`'s callers use."""
        found = self._task_schemas.get(arrow)
        if found is None:
            found = self._task_schemas[arrow] = pyarrow_to_schema(
                arrow,
                name_mapping=self._table_schema.name_mapping,
                format_version=self._metadata.format_version,
            )
        return found

    def prepare(self, arrow: pa.Schema) -> None:
        """Compute what `write` needs for rows of this Arrow schema (call before writing
        from several threads)."""
        self._task_schema(arrow)

    def write(self, rows: pa.Table, partition_key: PartitionKey | None) -> DataFile:
        """One data file holding `rows` (all of one partition: `partition_key`'s)."""
        task_schema = self._task_schemas[rows.schema]
        table = pa.Table.from_batches(
            [
                _to_requested_schema(
                    requested_schema=self._file_schema,
                    file_schema=task_schema,
                    batch=batch,
                    downcast_ns_timestamp_to_us=self._downcast,
                    include_field_ids=True,
                    format_model=self._format_model,
                )
                for batch in rows.to_batches()
            ]
        )
        name = f"00000-{next(self._task_ids)}-{self._write_uuid}.parquet"
        path = self._locations.new_data_location(data_file_name=name, partition_key=partition_key)
        kwargs = self._kwargs
        if self._dictionary_where_it_pays:
            kwargs = {**kwargs, "use_dictionary": dictionary_columns(table)}
        output = self._io.new_output(path)
        with output.create(overwrite=True) as stream:
            writer = pq.ParquetWriter(
                cast(IO[Any], stream),
                schema=table.schema,
                store_decimal_as_integer=True,
                **kwargs,
            )
            writer.write(table, row_group_size=self._row_group_size)
            writer.close()
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=writer.writer.metadata,
            stats_columns=self._stats_plan,
            parquet_column_mapping=self._id_mapping,
        )
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=partition_key.partition if partition_key else Record(),
            file_size_in_bytes=len(output),
            sort_order_id=None,
            spec_id=self._metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
