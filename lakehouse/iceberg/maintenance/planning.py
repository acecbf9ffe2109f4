"""Compaction planning: which small data files to rewrite together, per partition."""

from dataclasses import dataclass

from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.typedef import Record
from pyiceberg.utils.bin_packing import ListPacker

from lakehouse.iceberg.maintenance._manifests import ManifestEntries, live_data_files

SMALL_FILE_RATIO = 0.75
"""A data file smaller than this fraction of the target size is small."""

PartitionKey = tuple[int, Record]
"""(spec id, partition value): the unit files may be merged within."""


@dataclass(frozen=True)
class FileGroup:
    """Small files of one partition to be rewritten as one file."""

    spec_id: int
    partition: Record
    partition_path: str
    files: tuple[DataFile, ...]

    @property
    def bytes(self) -> int:
        return sum(f.file_size_in_bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.record_count for f in self.files)


@dataclass(frozen=True)
class CompactionPlan:
    """Groups to rewrite, planned against one snapshot."""

    snapshot_id: int | None
    groups: tuple[FileGroup, ...]
    data_files: int
    data_bytes: int
    partitions: int
    skipped_compact: int
    skipped_deletes: int


def _partition_path(table: Table, key: PartitionKey) -> str:
    spec = table.specs()[key[0]]
    return spec.partition_to_path(key[1], table.schema()) if spec.fields else ""


def _current_files(
    table: Table, row_filter: BooleanExpression, entries: ManifestEntries | None = None
) -> tuple[dict[PartitionKey, list[DataFile]], set[PartitionKey]]:
    """Live data files by partition, and the partitions that have delete files."""
    return live_data_files(
        table.metadata, table.io, row_filter, entries or ManifestEntries(table.io)
    )


def plan_compaction(
    table: Table,
    *,
    target_file_size_bytes: int,
    min_input_files: int = 2,
    partition_filter: BooleanExpression | None = None,
    small_file_ratio: float = SMALL_FILE_RATIO,
    entries: ManifestEntries | None = None,
) -> CompactionPlan:
    """Bin-pack each partition's small files into groups near the target size.

    A partition with fewer than `min_input_files` small files is already compact. A
    partition that has delete files is skipped (its rows would need the deletes applied).
    `entries` caches the manifests read, for the commit to reuse.
    """
    by_partition, with_deletes = _current_files(table, partition_filter or AlwaysTrue(), entries)
    small_limit = int(target_file_size_bytes * small_file_ratio)
    packer: ListPacker[DataFile] = ListPacker(
        target_weight=target_file_size_bytes, lookback=8, largest_bin_first=False
    )
    groups: list[FileGroup] = []
    skipped_compact = skipped_deletes = 0
    for key, files in sorted(by_partition.items(), key=lambda kv: _partition_path(table, kv[0])):
        small = [f for f in files if f.file_size_in_bytes < small_limit]
        if len(small) < min_input_files:
            skipped_compact += 1
            continue
        if key in with_deletes:
            skipped_deletes += 1
            continue
        path = _partition_path(table, key)
        for bin_files in packer.pack(small, lambda f: f.file_size_in_bytes):
            if len(bin_files) > 1:
                groups.append(FileGroup(key[0], key[1], path, tuple(bin_files)))
    all_files = [f for files in by_partition.values() for f in files]
    snapshot = table.current_snapshot()
    return CompactionPlan(
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        groups=tuple(groups),
        data_files=len(all_files),
        data_bytes=sum(f.file_size_in_bytes for f in all_files),
        partitions=len(by_partition),
        skipped_compact=skipped_compact,
        skipped_deletes=skipped_deletes,
    )


def small_file_stats(
    table: Table, target_file_size_bytes: int, small_file_ratio: float = SMALL_FILE_RATIO
) -> dict[str, int]:
    """Small data files per partition path (`""` when unpartitioned), for the sensor."""
    by_partition, _ = _current_files(table, AlwaysTrue())
    small_limit = int(target_file_size_bytes * small_file_ratio)
    counts: dict[str, int] = {}
    for key, files in by_partition.items():
        small = sum(1 for f in files if f.file_size_in_bytes < small_limit)
        if small:
            path = _partition_path(table, key)
            counts[path] = counts.get(path, 0) + small
    return counts


def rebind(
    table: Table, groups: tuple[FileGroup, ...], entries: ManifestEntries | None = None
) -> tuple[tuple[FileGroup, ...], int]:
    """Re-plan after a lost race: the groups re-bound to the current snapshot's file objects,
    and how many groups conflict (an input is gone, or its partition now has delete files)."""
    by_partition, with_deletes = _current_files(table, AlwaysTrue(), entries)
    live = {f.file_path: f for files in by_partition.values() for f in files}
    conflicts = 0
    kept: list[FileGroup] = []
    for group in groups:
        if (group.spec_id, group.partition) in with_deletes or any(
            f.file_path not in live for f in group.files
        ):
            conflicts += 1
            continue
        files = tuple(live[f.file_path] for f in group.files)
        kept.append(FileGroup(group.spec_id, group.partition, group.partition_path, files))
    return tuple(kept), conflicts
