"""Small data files read while compaction is still planning.

Planning decodes every manifest in Python on one thread, leaving the second core idle for
a third of the run. Here each live small data file a manifest names is read as soon as the
manifest is decoded, and batches of files are decoded by Polars on a helper thread (Polars
releases the GIL), so most of the input is already in memory when the plan is made. The
files' bytes are read on the planning thread itself: a helper thread making ~4,000 small
system calls would wait for the GIL after each one while the planning thread holds it
(that convoy made an earlier attempt at this slower than not overlapping at all).

Which files will be rewritten is known only once every manifest is read (a partition's
small files are bin-packed together), so files are taken before the plan says so: a file
no group needs was read for nothing, and the total is bounded. A group is taken from here
only if every one of its files is; its rows are sliced out of the batches in its files'
order (Polars concatenates a batch's sources in order; each file's rows are found by the
record counts before it).
"""

from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
from pyiceberg.manifest import DataFileContent, FileFormat, ManifestEntry, ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

from lakehouse.iceberg.maintenance._local import local_path, read_local
from lakehouse.iceberg.maintenance._polars_read import MAX_CHUNK_BYTES, read_files, table_ok
from lakehouse.iceberg.maintenance.planning import FileGroup


class Prefetch:
    """Files taken as manifests are decoded (`add`), decoded in batches on a helper thread."""

    @classmethod
    def for_table(cls, table: Table, small_bytes: int) -> "Prefetch | None":
        """A prefetch for planning all of `table`'s current snapshot, or None where Polars
        does not read its files (see `_polars_read`). Batches are an eighth of the data
        files' total size (the snapshot summary's), at most `MAX_CHUNK_BYTES` are taken."""
        snapshot = table.current_snapshot()
        if snapshot is None or not table_ok(table.io, table.metadata):
            return None
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        total = int(summary.get("total-files-size", 0))
        return cls(
            table.metadata,
            small_bytes=small_bytes,
            batch_bytes=max(1 << 20, min(MAX_CHUNK_BYTES, total // 8)),
            budget_bytes=MAX_CHUNK_BYTES,
        )

    def __init__(
        self, metadata: TableMetadata, *, small_bytes: int, batch_bytes: int, budget_bytes: int
    ) -> None:
        self._metadata = metadata
        self._small_bytes = small_bytes
        self._batch_bytes = batch_bytes
        self._budget_bytes = budget_bytes
        self._taken_bytes = 0
        self._open = True
        self._pending: list[tuple[str, bytes, int]] = []
        self._pending_bytes = 0
        self._where: dict[str, tuple[int, int, int]] = {}
        """File path → (batch, first row in it, rows)."""
        self._batches: list[Future[pa.Table | None]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compaction-prefetch")

    def add(self, entries: list[ManifestEntry]) -> None:
        """Take the live small data files of a manifest just decoded (until `finish`)."""
        if not self._open:
            return
        for entry in entries:
            data_file = entry.data_file
            size = data_file.file_size_in_bytes
            path = local_path(data_file.file_path)
            if (
                entry.status == ManifestEntryStatus.DELETED
                or data_file.content != DataFileContent.DATA
                or size >= self._small_bytes
                or data_file.file_format != FileFormat.PARQUET
                or path is None
            ):
                continue
            if self._taken_bytes + size > self._budget_bytes:
                self.finish()  # the rest is read when rewritten
                return
            try:
                content = read_local(path, size)
            except OSError:
                continue  # e.g. gone: the rewrite reads it (and fails) the usual way
            self._taken_bytes += size
            self._pending.append((data_file.file_path, content, data_file.record_count))
            self._pending_bytes += size
        if self._pending_bytes >= self._batch_bytes:
            self._submit()

    def finish(self) -> None:
        """Planning is over: decode what is pending, take nothing more."""
        self._open = False
        if self._pending:
            self._submit()

    def _submit(self) -> None:
        files, self._pending, self._pending_bytes = self._pending, [], 0
        batch = len(self._batches)
        offset = 0
        for path, _, rows in files:
            self._where[path] = (batch, offset, rows)
            offset += rows
        contents = [content for _, content, _ in files]
        self._batches.append(self._pool.submit(read_files, self._metadata, contents, offset))

    def batch_of(self, group: FileGroup) -> int | None:
        """The last batch holding one of the group's files, or None if one is not here."""
        last = -1
        for data_file in group.files:
            where = self._where.get(data_file.file_path)
            if where is None or where[2] != data_file.record_count:
                return None
            last = max(last, where[0])
        return last

    def rows(self, group: FileGroup) -> pa.Table | None:
        """The group's rows (waiting for their batches), or None if a file is not here or
        its batch could not be read exactly."""
        if self.batch_of(group) is None:
            return None
        spans: list[tuple[int, int, int]] = []
        for data_file in group.files:
            batch, offset, rows = self._where[data_file.file_path]
            if spans and spans[-1][0] == batch and sum(spans[-1][1:]) == offset:
                spans[-1] = (batch, spans[-1][1], spans[-1][2] + rows)  # contiguous: one slice
            else:
                spans.append((batch, offset, rows))
        tables = []
        for batch, offset, rows in spans:
            table = self._batches[batch].result()
            if table is None:
                return None
            tables.append(table.slice(offset, rows))
        if len(tables) == 1:
            return tables[0]
        if any(not t.schema.equals(tables[0].schema) for t in tables):
            return None  # batches of other string widths: the usual way casts them alike
        return pa.concat_tables(tables).combine_chunks()

    def close(self) -> None:
        """Stop and drop everything read."""
        self._open = False
        self._pending = []
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._batches.clear()
        self._where.clear()
