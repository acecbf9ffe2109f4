"""Compaction: rewrite each partition's small data files into few target-sized files and
merge the snapshot's manifests, in one atomic `replace` commit that races ingestion safely."""

import dataclasses
import random
import time
from dataclasses import dataclass

from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.exceptions import ValidationException as PyIcebergValidationError
from pyiceberg.expressions import BooleanExpression
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from lakehouse.errors import CommitConflictError, LakehouseError
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.maintenance._files import delete_all
from lakehouse.iceberg.maintenance._gc import no_gc
from lakehouse.iceberg.maintenance._manifests import ManifestEntries
from lakehouse.iceberg.maintenance._prefetch import Prefetch
from lakehouse.iceberg.maintenance._producer import ReplaceFiles
from lakehouse.iceberg.maintenance._rewrite import rewrite_groups
from lakehouse.iceberg.maintenance._switch import short_switch_interval
from lakehouse.iceberg.maintenance._table import TableOrLoader, load
from lakehouse.iceberg.maintenance.planning import (
    SMALL_FILE_RATIO,
    CompactionPlan,
    FileGroup,
    plan_compaction,
    rebind,
)
from lakehouse.iceberg.maintenance.reports import Report
from lakehouse.iceberg.view_transaction import ViewTransaction


@dataclass(frozen=True)
class CompactionReport(Report):
    """What one compaction run did (counts over data files of the current snapshot)."""

    files_before: int
    bytes_before: int
    files_after: int
    bytes_after: int
    files_rewritten: int
    files_written: int
    rows_rewritten: int
    partitions_compacted: int
    partitions_skipped_compact: int
    partitions_skipped_deletes: int
    manifests_before: int
    manifests_after: int
    attempts: int
    seconds: float
    snapshot_id: int
    """The replace snapshot committed, or -1 when there was nothing to do."""
    plan_seconds: float = 0.0
    """Loading the table and planning (reading every manifest once)."""
    rewrite_seconds: float = 0.0
    """Reading the input files and writing the new ones."""
    commit_seconds: float = 0.0
    """Writing manifests and the manifest list, and the catalog commits (all attempts)."""
    manifest_rewrite_snapshot_id: int = -1
    """The manifest-only `replace` snapshot on top of a merging compaction's, dropping the
    DELETED entries from the current manifests (same catalog commit), or -1 (none needed)."""


def _manifest_count(table: Table, entries: ManifestEntries) -> int:
    snapshot = table.current_snapshot()
    return len(entries.manifests(snapshot)) if snapshot else 0


def _commit(
    table: Table,
    groups: tuple[FileGroup, ...],
    written: dict[tuple[str, ...], list[DataFile]],
    merge_manifests: bool,
    entries: ManifestEntries,
) -> tuple[Table, tuple[int, int]]:
    """One catalog commit: the `replace` snapshot and, after a merge that left DELETED
    entries in the current manifests, the manifest rewrite on top of it (see
    `_manifest_rewrite`). Returns the committed table and both snapshot ids (-1: no
    rewrite)."""
    transaction = cas_transaction(table)
    assert isinstance(transaction, ViewTransaction)
    producer = ReplaceFiles(transaction, merge_manifests=merge_manifests, entries=entries)
    for group in groups:
        for old in group.files:
            producer.delete_data_file(old)
        for new in written[_key(group)]:
            producer.append_data_file(new)
    producer.commit()
    rewrite = _manifest_rewrite(transaction, producer, entries) if merge_manifests else None
    committed = transaction.commit_transaction()
    producer.delete_merged_away_manifests()
    if rewrite is None:
        return committed, (producer.snapshot_id, -1)
    rewrite.delete_merged_away_manifests()
    return committed, (producer.snapshot_id, rewrite.snapshot_id)


def _manifest_rewrite(
    transaction: ViewTransaction, compaction: ReplaceFiles, entries: ManifestEntries
) -> ReplaceFiles | None:
    """Stage a manifest-only `replace` snapshot (same live files, no DELETED entries) on top
    of the compaction's, in the same transaction, when the compaction's manifests hold
    DELETED entries: pyiceberg's scan planning decodes every entry of the current snapshot,
    deleted ones included. The compaction's snapshot keeps its DELETED entries in history
    (incremental readers, expiry), as Java's rewrite_data_files followed by
    rewrite_manifests leaves it."""
    snapshot = transaction.table_metadata.snapshot_by_id(compaction.snapshot_id)
    if snapshot is None or not any(m.deleted_files_count for m in entries.manifests(snapshot)):
        return None
    compaction.remember_written()
    rewrite = ReplaceFiles(
        transaction, merge_manifests=True, drop_deleted_entries=True, entries=entries
    )
    rewrite.commit()
    return rewrite


def _key(group: FileGroup) -> tuple[str, ...]:
    return tuple(f.file_path for f in group.files)


def compact(
    table_or_loader: TableOrLoader,
    *,
    target_file_size_bytes: int,
    min_input_files: int = 2,
    partition_filter: BooleanExpression | None = None,
    max_attempts: int = 8,
    small_file_ratio: float = SMALL_FILE_RATIO,
    min_manifests_to_merge: int = 16,
) -> CompactionReport:
    """Rewrite small files per partition and merge manifests in one `replace` snapshot.

    Rows are read from the exact input files and written back unchanged. A concurrent
    append is kept (the commit is re-validated on the new head and retried up to
    `max_attempts` times); an input file removed or given delete files concurrently
    raises `CommitConflictError` with nothing committed and the new files deleted.
    Manifests are merged when the snapshot has at least `min_manifests_to_merge`.
    Table properties (the ingest offsets) are never touched.
    """
    started = time.monotonic()
    with no_gc(), short_switch_interval():  # the whole run: see `_gc`, `_switch`
        table = load(table_or_loader)
        prefetch = (
            Prefetch.for_table(table, int(target_file_size_bytes * small_file_ratio))
            if partition_filter is None
            else None
        )
        entries = ManifestEntries(
            table.io,
            prefetch.add if prefetch is not None else None,
            partial=partition_filter is None,
        )
        try:
            return _compact(
                table_or_loader,
                table,
                entries,
                prefetch,
                started,
                target_file_size_bytes=target_file_size_bytes,
                min_input_files=min_input_files,
                partition_filter=partition_filter,
                max_attempts=max_attempts,
                small_file_ratio=small_file_ratio,
                min_manifests_to_merge=min_manifests_to_merge,
            )
        finally:
            entries.clear()
            if prefetch is not None:
                prefetch.close()


def _compact(
    table_or_loader: TableOrLoader,
    table: Table,
    entries: ManifestEntries,
    prefetch: Prefetch | None,
    started: float,
    *,
    target_file_size_bytes: int,
    min_input_files: int,
    partition_filter: BooleanExpression | None,
    max_attempts: int,
    small_file_ratio: float,
    min_manifests_to_merge: int,
) -> CompactionReport:
    plan = plan_compaction(
        table,
        target_file_size_bytes=target_file_size_bytes,
        min_input_files=min_input_files,
        partition_filter=partition_filter,
        small_file_ratio=small_file_ratio,
        entries=entries,
    )
    if prefetch is not None:
        prefetch.finish()
    manifests_before = _manifest_count(table, entries)
    merge = manifests_before >= min_manifests_to_merge
    groups = plan.groups
    phases = [time.monotonic() - started]
    if not groups and not merge:
        return _report(plan, groups, {}, manifests_before, manifests_before, 0, started, -1)

    written = _rewrite_all(table, groups, prefetch)
    if prefetch is not None:
        prefetch.close()  # free what was read before committing
    phases.append(time.monotonic() - started - phases[0])
    try:
        table, groups, snapshot_ids, attempts = _commit_with_retries(
            table_or_loader, table, groups, written, merge, max_attempts, entries
        )
    except CommitConflictError:
        _discard(table, written)
        raise
    except CommitStateUnknownException as exc:
        # The replace may have landed and may reference the new files: keep them.
        raise LakehouseError(f"compaction of {table.name()}: commit outcome unknown") from exc
    # Any other failure leaves the new files for orphan removal: deleting them is only safe
    # when the commit certainly did not land.
    snapshot_id, cleaned = snapshot_ids
    report = _report(
        plan,
        groups,
        written,
        manifests_before,
        _manifest_count(table, entries),
        attempts,
        started,
        snapshot_id,
        phases,
    )
    return dataclasses.replace(report, manifest_rewrite_snapshot_id=cleaned)


def _rewrite_all(
    table: Table, groups: tuple[FileGroup, ...], prefetch: Prefetch | None
) -> dict[tuple[str, ...], list[DataFile]]:
    """Every group rewritten (`rewrite_groups` deletes its output itself on failure)."""
    rewritten = rewrite_groups(table, groups, prefetch)
    return {_key(g): files for g, files in zip(groups, rewritten, strict=True)}


def _discard(table: Table, written: dict[tuple[str, ...], list[DataFile]]) -> None:
    delete_all(table.io, [f.file_path for files in written.values() for f in files])


def _commit_with_retries(
    table_or_loader: TableOrLoader,
    table: Table,
    groups: tuple[FileGroup, ...],
    written: dict[tuple[str, ...], list[DataFile]],
    merge: bool,
    max_attempts: int,
    entries: ManifestEntries,
) -> tuple[Table, tuple[FileGroup, ...], tuple[int, int], int]:
    """Commit; after a lost race reload, re-check every group against the new head, retry."""
    spec_id = table.metadata.default_spec_id
    for attempt in range(1, max_attempts + 1):
        try:
            committed, snapshot_ids = _commit(table, groups, written, merge, entries)
            return committed, groups, snapshot_ids, attempt
        except CommitFailedException as exc:
            if attempt == max_attempts:
                raise CommitConflictError(
                    f"compaction of {table.name()} lost {attempt} commit races; giving up"
                ) from exc
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # desynchronise
            table = load(table_or_loader)
            groups, conflicts = rebind(table, groups, entries)
            if conflicts or table.metadata.default_spec_id != spec_id:
                raise CommitConflictError(
                    f"compaction of {table.name()}: {conflicts} file group(s) changed "
                    "concurrently (input removed or delete files added); nothing committed"
                ) from exc
        except PyIcebergValidationError as exc:
            raise CommitConflictError(
                f"compaction of {table.name()}: inputs changed concurrently: {exc}"
            ) from exc
    raise AssertionError("unreachable")


def _report(
    plan: CompactionPlan,
    groups: tuple[FileGroup, ...],
    written: dict[tuple[str, ...], list[DataFile]],
    manifests_before: int,
    manifests_after: int,
    attempts: int,
    started: float,
    snapshot_id: int,
    phases: list[float] | None = None,
) -> CompactionReport:
    seconds = time.monotonic() - started
    plan_s, rewrite_s = phases if phases else (seconds, 0.0)
    rewritten = [f for g in groups for f in g.files]
    new_files = [f for g in groups for f in written.get(_key(g), [])]
    return CompactionReport(
        files_before=plan.data_files,
        bytes_before=plan.data_bytes,
        files_after=plan.data_files - len(rewritten) + len(new_files),
        bytes_after=plan.data_bytes
        - sum(f.file_size_in_bytes for f in rewritten)
        + sum(f.file_size_in_bytes for f in new_files),
        files_rewritten=len(rewritten),
        files_written=len(new_files),
        rows_rewritten=sum(g.rows for g in groups),
        partitions_compacted=len({(g.spec_id, g.partition) for g in groups}),
        partitions_skipped_compact=plan.skipped_compact,
        partitions_skipped_deletes=plan.skipped_deletes,
        manifests_before=manifests_before,
        manifests_after=manifests_after,
        attempts=attempts,
        seconds=round(seconds, 3),
        snapshot_id=snapshot_id,
        plan_seconds=round(plan_s, 3),
        rewrite_seconds=round(rewrite_s, 3),
        commit_seconds=round(seconds - plan_s - rewrite_s, 3),
    )
