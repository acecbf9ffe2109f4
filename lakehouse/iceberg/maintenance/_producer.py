"""A `replace` snapshot producer: swaps data files without changing table data.

pyiceberg 0.12 has no RewriteFiles (apache/iceberg-python#1092) nor RewriteManifests (#270).
Both are an overwrite of explicit files whose snapshot is labelled `replace` (the data did
not change), validated like Java's RewriteFiles: a concurrent append is fine, a concurrently
removed input file or a new delete file against an input fails. Optionally the producer
also merges the snapshot's data manifests.

The manifests are built in one pass over entries read once (`ManifestEntries`, shared with
planning), where pyiceberg's `_OverwriteFiles` plus its merge manager read every manifest
twice, rewrote each one touched by a delete, then read and merged those again: each input
entry becomes EXISTING, DELETED (by this snapshot) or is dropped (deleted earlier), as
Java's ManifestFilterManager / ManifestMergeManager would write it.
"""

import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from pyiceberg.exceptions import ValidationException
from pyiceberg.manifest import (
    DataFile,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
)
from pyiceberg.partitioning import PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import TableProperties, Transaction
from pyiceberg.table.snapshots import (
    Operation,
    SnapshotSummaryCollector,
    Summary,
    update_snapshot_summaries,
)
from pyiceberg.table.update.snapshot import _OverwriteFiles
from pyiceberg.table.update.validate import (
    _validate_data_files_exist,
    _validate_no_new_deletes_for_data_files,
)
from pyiceberg.typedef import EMPTY_DICT, KeyDefaultDict
from pyiceberg.utils.bin_packing import ListPacker
from pyiceberg.utils.properties import property_as_int

from lakehouse.iceberg.maintenance._avro import (
    copy_entries,
    fast_manifest_writer,
    written_entries,
)
from lakehouse.iceberg.maintenance._manifests import ManifestEntries


class ReplaceFiles(_OverwriteFiles):
    """Delete and add data files in one `replace` snapshot, merging manifests if asked.

    With no files to add or delete and `drop_deleted_entries`, it is a manifest rewrite
    (Java's RewriteManifests): the same live files, all EXISTING, in merged manifests
    without the DELETED entries earlier snapshots recorded (which every scan planning of
    the snapshot would otherwise decode and skip).
    """

    def __init__(
        self,
        transaction: Transaction,
        *,
        merge_manifests: bool,
        drop_deleted_entries: bool = False,
        entries: ManifestEntries | None = None,
        snapshot_properties: dict[str, str] = EMPTY_DICT,
    ) -> None:
        super().__init__(
            operation=Operation.OVERWRITE,
            transaction=transaction,
            io=transaction._table.io,
            commit_uuid=uuid.uuid4(),
            snapshot_properties=snapshot_properties,
        )
        self._merge = merge_manifests
        self._drop_deleted = drop_deleted_entries
        self._cache = entries or ManifestEntries(transaction._table.io)
        self._wrote: dict[str, list[ManifestEntry] | None] = {}

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        """pyiceberg's `_summary`, with each partition's path computed once rather than once
        per file (4,000 `partition_to_path` calls took ~0.25 s), labelled `replace`."""
        metadata = self._transaction.table_metadata
        schema = metadata.schema()
        specs = metadata.specs()
        collector = _PathCachingCollector(
            partition_summary_limit=property_as_int(
                metadata.properties,
                TableProperties.WRITE_PARTITION_SUMMARY_LIMIT,
                TableProperties.WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT,
            )
            or 0
        )
        for data_file in self._added_data_files:
            collector.add_file(data_file, schema=schema, partition_spec=metadata.spec())
        for data_file in self._deleted_data_files:
            collector.remove_file(data_file, schema=schema, partition_spec=specs[data_file.spec_id])
        parent = (
            metadata.snapshot_by_id(self._parent_snapshot_id)
            if self._parent_snapshot_id is not None
            else None
        )
        # pyiceberg's totals only know append/overwrite/delete; a replace's are an
        # overwrite's, only the label differs
        summary = update_snapshot_summaries(
            summary=Summary(
                operation=Operation.OVERWRITE, **collector.build(), **snapshot_properties
            ),
            previous_summary=parent.summary if parent is not None else None,
        )
        return Summary(operation=Operation.REPLACE, **summary.additional_properties)

    def _validate_concurrency(self) -> None:
        """Snapshot isolation for a rewrite: inputs must still exist and have no new deletes."""
        window = self._commit_window
        if (
            window is None
            or window.is_empty()
            or window.head is None
            or not self._deleted_data_files
        ):
            return
        table = self._transaction._table
        _validate_data_files_exist(table, window.head, self._deleted_data_files, window.base)
        _validate_no_new_deletes_for_data_files(
            table, window.head, None, self._deleted_data_files, window.base
        )

    def new_manifest_writer(self, spec: PartitionSpec) -> ManifestWriter:
        """pyiceberg's manifest writer (header, counts, partition summaries) with fastavro
        encoding the entries (see `_avro`)."""
        return fast_manifest_writer(super().new_manifest_writer(spec))

    def fetch_manifest_entry(
        self, manifest: ManifestFile, discard_deleted: bool = True
    ) -> list[ManifestEntry]:
        return self._cache.live(manifest) if discard_deleted else self._cache.all(manifest)

    def _manifests(self) -> list[ManifestFile]:
        """The new snapshot's manifests: one for the added files, the parent's manifests with
        the deleted files marked DELETED (merged into few manifests when asked), and the
        parent's live delete manifests as they are."""
        metadata = self._transaction.table_metadata
        parent = (
            metadata.snapshot_by_id(self._parent_snapshot_id)
            if self._parent_snapshot_id is not None
            else None
        )
        manifests = self._cache.manifests(parent) if parent is not None else []
        data = [m for m in manifests if m.content == ManifestContent.DATA]
        kept = [m for m in manifests if m.content == ManifestContent.DELETES and _live(m)]

        # A manifest not read yet is read only when merging or when its partition summaries
        # say it may hold a deleted file (pyiceberg's evaluator over an OR of every deleted
        # file's partition: slow, so not run on manifests already in the cache).
        deleted = {f.file_path for f in self._deleted_data_files}
        if deleted and not self._merge:
            self._build_delete_files_partition_predicate()
            evaluators: dict[int, Callable[[ManifestFile], bool]] = KeyDefaultDict(
                self._build_manifest_evaluator
            )
            self._cache.load(
                m for m in data if not self._cache.has(m) and evaluators[m.partition_spec_id](m)
            )
        elif self._merge:
            self._cache.load(data)
        touched: set[str] = set()
        found: set[str] = set()
        for m in data:
            if deleted and self._cache.has(m):
                hits = {e.data_file.file_path for e in self._cache.live(m)} & deleted
                if hits:
                    touched.add(m.manifest_path)
                    found |= hits
        if missing := deleted - found:
            raise ValidationException(
                f"Missing required files to delete: {', '.join(sorted(missing))}"
            )

        added = [
            ManifestEntry.from_args(
                status=ManifestEntryStatus.ADDED,
                snapshot_id=self.snapshot_id,
                sequence_number=None,
                file_sequence_number=None,
                data_file=data_file,
            )
            for data_file in self._added_data_files
        ]
        bins = self._merge_bins(data) if self._merge else [[m] for m in data]
        if self._merge and added:
            # the added files join the first merged manifest of the current spec, if any
            default = [
                i for i, b in enumerate(bins) if b[0].partition_spec_id == metadata.default_spec_id
            ]
            if default:
                bins.insert(0, bins.pop(default[0]))
            else:
                bins.insert(0, [])
        elif added:
            bins.insert(0, [])
        new: list[ManifestFile] = []
        for index, bin_ in enumerate(bins):
            with_added = added if index == 0 else []
            if (
                not with_added
                and len(bin_) == 1
                and bin_[0].manifest_path not in touched
                and not (self._drop_deleted and bin_[0].deleted_files_count)
            ):
                if _live(bin_[0]):
                    new.append(bin_[0])
                continue
            if not with_added and not any(self._cache.live(m) for m in bin_):
                continue  # only files deleted by earlier snapshots
            spec = self.spec(bin_[0].partition_spec_id) if bin_ else metadata.spec()
            with self.new_manifest_writer(spec) as writer:
                for entry in with_added:
                    writer.add(entry)
                for m in bin_:
                    self._copy_entries(writer, m, deleted)
            manifest = writer.to_manifest_file()
            self._wrote[manifest.manifest_path] = written_entries(writer)
            new.append(manifest)
        return new + kept

    def remember_written(self) -> None:
        """After `commit()` staged the snapshot: put the entries of the manifests it wrote in
        the cache as a reader of the snapshot would get them (ADDED entries inherit its
        sequence number), so a producer stacked on it in the same transaction (the manifest
        rewrite) does not read them back."""
        snapshot = self._transaction.table_metadata.snapshot_by_id(self.snapshot_id)
        if snapshot is None:
            return
        seq = snapshot.sequence_number
        for path, written in self._wrote.items():
            if written is None:
                continue
            self._cache.put(
                path,
                [
                    e
                    if e.sequence_number is not None
                    else ManifestEntry.from_args(
                        status=e.status,
                        snapshot_id=e.snapshot_id,
                        sequence_number=seq,
                        file_sequence_number=(
                            seq if e.file_sequence_number is None else e.file_sequence_number
                        ),
                        data_file=e.data_file,
                    )
                    for e in written
                ],
            )

    def _merge_bins(self, data: list[ManifestFile]) -> list[list[ManifestFile]]:
        """Data manifests packed per spec into bins of about `commit.manifest.target-size-bytes`
        (as pyiceberg's and Java's merge managers pack them)."""
        target = property_as_int(
            self._transaction.table_metadata.properties,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
        )
        by_spec: dict[int, list[ManifestFile]] = defaultdict(list)
        for m in data:
            by_spec[m.partition_spec_id].append(m)
        packer: ListPacker[ManifestFile] = ListPacker(
            target_weight=int(target or TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT),
            lookback=1,
            largest_bin_first=False,
        )
        return [
            bin_
            for spec_id in sorted(by_spec)
            for bin_ in packer.pack_end(by_spec[spec_id], lambda m: m.manifest_length)
        ]

    def _copy_entries(
        self, writer: ManifestWriter, manifest: ManifestFile, deleted: set[str]
    ) -> None:
        """The manifest's live entries: DELETED by this snapshot if in `deleted`, else
        EXISTING (entries deleted by an earlier snapshot are dropped: no reader needs them)."""
        copy_entries(writer, self._cache.all(manifest), deleted)

    def delete_merged_away_manifests(self) -> None:
        """After the commit: delete manifests this producer wrote that the committed snapshot
        does not reference (none are expected; kept as a safety net for orphans)."""
        snapshot = self._transaction._table.metadata.snapshot_by_id(self.snapshot_id)
        if snapshot is None:
            return
        kept = {m.manifest_path for m in snapshot.manifests(self._io)}
        for path in self._written_manifests:
            if path not in kept:
                with contextlib.suppress(OSError):  # left for orphan removal
                    self._io.delete(path)


class _PathCachingCollector(SnapshotSummaryCollector):
    """pyiceberg's summary collector, computing each partition's path once."""

    def __init__(self, partition_summary_limit: int = 0) -> None:
        super().__init__(partition_summary_limit=partition_summary_limit)
        self._paths: dict[tuple[int, tuple[Any, ...]], str] = {}

    def update_partition_metrics(
        self, partition_spec: PartitionSpec, file: DataFile, is_add_file: bool, schema: Schema
    ) -> None:
        key = (partition_spec.spec_id, tuple(file.partition._data))
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = partition_spec.partition_to_path(file.partition, schema)
        metrics = self.partition_metrics[path]
        if is_add_file:
            metrics.add_file(file)
        else:
            metrics.remove_file(file)


def _live(manifest: ManifestFile) -> bool:
    """Whether a manifest of the parent holds files a reader needs (not only old deletes)."""
    return manifest.has_added_files() or manifest.has_existing_files()
