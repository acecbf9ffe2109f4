"""Manifest entries read once per maintenance run, shared by planning and the commit.

pyiceberg's scan planning, `_OverwriteFiles` and the manifest merge manager each open every
manifest again; at 1,000 manifests one pass costs about a second. Here each manifest is read
once (all entries, deleted ones included) and the planner and the snapshot producer take
their entries from this cache.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.io import FileIO
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
)
from pyiceberg.table import INITIAL_SEQUENCE_NUMBER, ManifestGroupPlanner, _min_sequence_number
from pyiceberg.table.delete_file_index import DeleteFileIndex
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.typedef import KeyDefaultDict, Record

from lakehouse.iceberg.maintenance._avro import read_manifests


class ManifestEntries:
    """Entries of manifest files by path, each file read at most once."""

    def __init__(
        self,
        io: FileIO,
        on_read: Callable[[list[ManifestEntry]], None] | None = None,
        *,
        partial: bool = False,
    ) -> None:
        """`on_read` is given each manifest's entries as they are decoded (see `_prefetch`);
        with `partial`, data files may come without their metric maps (see `_avro`)."""
        self._io = io
        self._on_read = on_read
        self._partial = partial
        self._entries: dict[str, list[ManifestEntry]] = {}
        self._lists: dict[str, list[ManifestFile]] = {}

    def manifests(self, snapshot: Snapshot) -> list[ManifestFile]:
        """The snapshot's manifest list, read once."""
        listed = self._lists.get(snapshot.manifest_list)
        if listed is None:
            listed = self._lists[snapshot.manifest_list] = snapshot.manifests(self._io)
        return listed

    def load(self, manifests: Iterable[ManifestFile]) -> None:
        """Read the manifests not read yet (fastavro, see `_avro`)."""
        todo = {m.manifest_path: m for m in manifests if m.manifest_path not in self._entries}
        if not todo:
            return
        read = read_manifests(self._io, list(todo.values()), self._on_read, self._partial)
        for path, entries in zip(todo, read, strict=True):
            self._entries[path] = entries

    def put(self, path: str, entries: list[ManifestEntry]) -> None:
        """Entries of a manifest this run wrote (as a reader of it would get them)."""
        self._entries[path] = entries

    def has(self, manifest: ManifestFile) -> bool:
        """Whether `manifest` was read already."""
        return manifest.manifest_path in self._entries

    def all(self, manifest: ManifestFile) -> list[ManifestEntry]:
        """Every entry of `manifest`, deleted ones included."""
        entries = self._entries.get(manifest.manifest_path)
        if entries is None:
            self.load([manifest])
            entries = self._entries[manifest.manifest_path]
        return entries

    def clear(self) -> None:
        """Drop every entry read (freed at once by reference counting, even while a
        producer or transaction that points at this cache is still in a reference cycle)."""
        self._entries.clear()
        self._lists.clear()

    def live(self, manifest: ManifestFile) -> list[ManifestEntry]:
        """Entries of `manifest` that are not marked deleted."""
        return [e for e in self.all(manifest) if e.status != ManifestEntryStatus.DELETED]


PartitionKey = tuple[int, Record]


class _Planner(ManifestGroupPlanner):
    """pyiceberg's scan planner (same manifest, partition and metrics evaluators, same
    delete-file matching) reading entries from a `ManifestEntries` cache."""

    def __init__(
        self,
        metadata: TableMetadata,
        io: FileIO,
        row_filter: BooleanExpression,
        entries: ManifestEntries,
    ) -> None:
        super().__init__(metadata, io, row_filter)
        self._cache = entries

    def plan_manifest_entries(
        self, manifests: Iterable[ManifestFile]
    ) -> Iterator[list[ManifestEntry]]:
        manifest_evaluators: dict[int, Callable[[ManifestFile], bool]] = KeyDefaultDict(
            self._build_manifest_evaluator
        )
        selected = [m for m in manifests if manifest_evaluators[m.partition_spec_id](m)]
        partition_evaluators: dict[int, Callable[[DataFile], bool]] = KeyDefaultDict(
            self._build_partition_evaluator
        )
        metrics_evaluator = self._build_metrics_evaluator()
        min_sequence_number = _min_sequence_number(selected)
        selected = [m for m in selected if self._check_sequence_number(min_sequence_number, m)]
        self._cache.load(selected)
        if self.row_filter == AlwaysTrue():  # every entry matches: skip ~10 µs per entry
            for manifest in selected:
                yield self._cache.live(manifest)
            return
        for manifest in selected:
            in_partition = partition_evaluators[manifest.partition_spec_id]
            yield [
                e
                for e in self._cache.live(manifest)
                if in_partition(e.data_file) and metrics_evaluator(e.data_file)
            ]


def live_data_files(
    metadata: TableMetadata,
    io: FileIO,
    row_filter: BooleanExpression,
    entries: ManifestEntries,
) -> tuple[dict[PartitionKey, list[DataFile]], set[PartitionKey]]:
    """The current snapshot's live data files matching `row_filter`, by (spec id, partition),
    and the partitions where a delete file applies to one of them (what `plan_files` would
    attach as the task's delete files; a partition with equality deletes counts too)."""
    by_partition: dict[PartitionKey, list[DataFile]] = defaultdict(list)
    with_deletes: set[PartitionKey] = set()
    snapshot = metadata.current_snapshot()
    if snapshot is None:
        return by_partition, with_deletes
    planner = _Planner(metadata, io, row_filter, entries)
    data_entries: list[ManifestEntry] = []
    delete_index = DeleteFileIndex()
    equality_deletes = False
    for entry in chain.from_iterable(planner.plan_manifest_entries(entries.manifests(snapshot))):
        content = entry.data_file.content
        if content == DataFileContent.DATA:
            data_entries.append(entry)
        elif content == DataFileContent.POSITION_DELETES:
            delete_index.add_delete_file(entry, partition_key=entry.data_file.partition)
        else:  # equality deletes: pyiceberg cannot apply them; leave every partition alone
            equality_deletes = True
    check_deletes = not delete_index.is_empty()
    for entry in data_entries:
        data_file = entry.data_file
        key = (data_file.spec_id, data_file.partition)
        by_partition[key].append(data_file)
        if equality_deletes or (
            check_deletes
            and delete_index.for_data_file(
                entry.sequence_number or INITIAL_SEQUENCE_NUMBER,
                data_file,
                partition_key=data_file.partition,
            )
        ):
            with_deletes.add(key)
    return by_partition, with_deletes
