"""Read exact data files and write them back as one file, with pyiceberg's own reader and writer
(schema projection by field id on read; partition values, metrics and field ids on write)."""

import uuid

from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import FileScanTask, Table, TableProperties

from lakehouse.errors import LakehouseError
from lakehouse.iceberg.maintenance._files import delete_all
from lakehouse.iceberg.maintenance.planning import FileGroup

_ONE_FILE = str(2**62)
"""Target size given to pyiceberg's writer so a group (already packed by size) stays one file."""


def rewrite_group(table: Table, group: FileGroup) -> list[DataFile]:
    """The group's rows, written as new data files in the table's current spec."""
    metadata = table.metadata
    tasks = [FileScanTask(f) for f in group.files]  # a list: ArrowScan iterates it twice
    rows = ArrowScan(metadata, table.io, metadata.schema(), AlwaysTrue()).to_table(tasks)
    properties = {**metadata.properties, TableProperties.WRITE_TARGET_FILE_SIZE_BYTES: _ONE_FILE}
    writer_metadata = metadata.model_copy(update={"properties": properties})
    written = list(
        _dataframe_to_data_files(
            table_metadata=writer_metadata,
            df=rows,
            io=table.io,
            write_uuid=uuid.uuid4(),
        )
    )
    if sum(f.record_count for f in written) != group.rows or rows.num_rows != group.rows:
        delete_all(table.io, [f.file_path for f in written])
        raise LakehouseError(
            f"compaction read {rows.num_rows} rows and wrote "
            f"{sum(f.record_count for f in written)} for {group.rows} planned "
            f"(partition {group.partition_path!r}); nothing committed"
        )
    return written
