"""Snapshot expiry that also deletes the files only the expired snapshots needed.

pyiceberg 0.12's `expire_snapshots` rewrites metadata and deletes nothing
(apache/iceberg-python#2604). Here: the files reachable before the commit, minus the files
the remaining snapshots (and the metadata written by the commit) still reach, are deleted
through the table's FileIO, only after the commit is known to have landed.
"""

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyiceberg.exceptions import CommitFailedException, CommitStateUnknownException
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import ancestors_of

from lakehouse.errors import CommitConflictError, LakehouseError
from lakehouse.iceberg.maintenance._files import (
    FileSet,
    delete_all,
    list_files,
    metadata_files,
    normalize,
    reachable_files,
)
from lakehouse.iceberg.maintenance._table import TableOrLoader, load
from lakehouse.iceberg.maintenance.reports import Report

_METADATA_VERSION = re.compile(r"^(\d+)-.*\.metadata\.json$")


@dataclass(frozen=True)
class ExpiryReport(Report):
    """Snapshots expired and files deleted (or, in a dry run, that would be)."""

    snapshots_before: int
    snapshots_expired: int
    snapshots_after: int
    data_files_deleted: int
    delete_files_deleted: int
    manifests_deleted: int
    manifest_lists_deleted: int
    metadata_files_deleted: int
    bytes_deleted: int
    delete_failures: int
    dry_run: bool
    seconds: float
    paths: tuple[str, ...] = ()
    """Every path deleted (or that would be); not published as metadata."""


def snapshots_to_expire(metadata: TableMetadata, cutoff: datetime, retain_last: int) -> set[int]:
    """Snapshots older than `cutoff`, except the newest `retain_last` of the main branch's
    history, the current snapshot, and every branch or tag head."""
    keep = {ref.snapshot_id for ref in metadata.refs.values()}
    if metadata.current_snapshot_id is not None:
        keep.add(metadata.current_snapshot_id)
    for index, snapshot in enumerate(ancestors_of(metadata.current_snapshot(), metadata)):
        if index >= retain_last:
            break
        keep.add(snapshot.snapshot_id)
    cutoff_ms = int(cutoff.timestamp() * 1000)
    return {
        s.snapshot_id
        for s in metadata.snapshots
        if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep
    }


def _referenced(table: Table, metadata: TableMetadata, location: str, cache: dict) -> FileSet:
    files = reachable_files(table.io, metadata.snapshots, live_entries_only=True, cache=cache)
    files.metadata = metadata_files(metadata, location)
    return files


def _stale_metadata(table: Table, live: FileSet) -> dict[str, int]:
    """Metadata files older than the oldest version the metadata log keeps
    (`write.metadata.previous-versions-max`), with their sizes."""
    versions = [
        int(m.group(1))
        for path in live.metadata
        if (m := _METADATA_VERSION.match(os.path.basename(path)))
    ]
    if not versions:
        return {}
    oldest_kept = min(versions)
    keep = {normalize(p) for p in live.metadata}
    stale: dict[str, int] = {}
    for stored in list_files(table.io, os.path.dirname(table.metadata_location)):
        m = _METADATA_VERSION.match(os.path.basename(stored.path))
        if m and int(m.group(1)) < oldest_kept and stored.path not in keep:
            stale[stored.uri] = stored.size
    return stale


def expire_snapshots(
    table_or_loader: TableOrLoader,
    *,
    older_than: datetime | timedelta,
    retain_last: int = 10,
    dry_run: bool = False,
    max_attempts: int = 5,
) -> ExpiryReport:
    """Expire snapshots older than `older_than` (a time, or an age) keeping at least the
    newest `retain_last`, then delete every file no remaining snapshot needs: data and
    delete files, manifests, manifest lists, and metadata files beyond the metadata log.

    A dry run computes the same list and deletes nothing. Table properties (the ingest
    offsets) are carried over untouched by the metadata commit.
    """
    started = time.monotonic()
    cutoff = datetime.now(UTC) - older_than if isinstance(older_than, timedelta) else older_than
    cache: dict = {}
    for attempt in range(1, max_attempts + 1):
        table = load(table_or_loader)
        metadata, location = table.metadata, table.metadata_location
        expired = snapshots_to_expire(metadata, cutoff, retain_last)
        before = _referenced(table, metadata, location, cache)
        if dry_run or not expired:
            remaining = [s for s in metadata.snapshots if s.snapshot_id not in expired]
            after = reachable_files(table.io, remaining, live_entries_only=True, cache=cache)
            after.metadata = metadata_files(metadata, location)
            break
        try:
            table.maintenance.expire_snapshots().by_ids(sorted(expired)).commit()
        except CommitFailedException as exc:
            if attempt == max_attempts:
                raise CommitConflictError(f"expiry on {table.name()} lost {attempt} races") from exc
            continue
        except CommitStateUnknownException as exc:
            raise LakehouseError(f"expiry on {table.name()}: commit outcome unknown") from exc
        after = _referenced(table, table.metadata, table.metadata_location, cache)
        break

    doomed = before.minus(after)
    stale = _stale_metadata(table, after)
    doomed.metadata |= set(stale)
    paths = doomed.all()
    failures = [] if dry_run else delete_all(table.io, paths)
    sizes = {**before.sizes, **stale}
    return ExpiryReport(
        snapshots_before=len(metadata.snapshots),
        snapshots_expired=len(expired),
        snapshots_after=len(table.metadata.snapshots),
        data_files_deleted=len(doomed.data),
        delete_files_deleted=len(doomed.deletes),
        manifests_deleted=len(doomed.manifests),
        manifest_lists_deleted=len(doomed.manifest_lists),
        metadata_files_deleted=len(doomed.metadata),
        bytes_deleted=sum(sizes.get(p, 0) for p in paths),
        delete_failures=len(failures),
        dry_run=dry_run,
        seconds=round(time.monotonic() - started, 3),
        paths=tuple(sorted(paths)),
    )
