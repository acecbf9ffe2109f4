"""Orphan-file removal: files under the table location that no metadata references.

pyiceberg 0.12 has none (apache/iceberg-python#1200). Storage is listed first and the
metadata read afterwards, so a file committed meanwhile is seen as referenced; a file being
written right now is protected by the age limit (`older_than`, three days by default).
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lakehouse.errors import LakehouseError
from lakehouse.iceberg.maintenance._files import (
    delete_all,
    list_files,
    metadata_files,
    normalize,
    reachable_files,
)
from lakehouse.iceberg.maintenance._table import TableOrLoader, load
from lakehouse.iceberg.maintenance.reports import Report


@dataclass(frozen=True)
class OrphanReport(Report):
    """Files found under the table location and what became of the unreferenced ones."""

    files_listed: int
    files_referenced: int
    orphans_found: int
    orphans_too_young: int
    orphans_deleted: int
    bytes_deleted: int
    delete_failures: int
    dry_run: bool
    seconds: float
    paths: tuple[str, ...] = ()
    """Orphans deleted (or that would be); not published as metadata."""


def remove_orphan_files(
    table_or_loader: TableOrLoader,
    *,
    older_than: timedelta = timedelta(days=3),
    dry_run: bool = False,
) -> OrphanReport:
    """Delete files under the table location that no snapshot, manifest, metadata log
    entry or statistics file references and that were last modified before `older_than`
    ago. Paths are compared without scheme (`file:///a` and `/a` are one file)."""
    started = time.monotonic()
    table = load(table_or_loader)
    stored = list(list_files(table.io, table.location()))
    table = load(table_or_loader)
    metadata = table.metadata
    referenced = reachable_files(table.io, metadata.snapshots, live_entries_only=False)
    referenced.metadata = metadata_files(metadata, table.metadata_location)
    known = {normalize(p) for p in referenced.all()}
    listed = {f.path for f in stored}
    if metadata.snapshots and not (known & listed):
        raise LakehouseError(
            f"orphan removal on {table.name()}: none of the {len(known)} referenced files "
            f"appear in the listing of {table.location()}; refusing to delete (path mismatch?)"
        )
    cutoff = datetime.now(UTC) - older_than
    orphans = [f for f in stored if f.path not in known]
    old = [f for f in orphans if f.modified < cutoff]
    failures = [] if dry_run else delete_all(table.io, [f.uri for f in old])
    return OrphanReport(
        files_listed=len(stored),
        files_referenced=len(known),
        orphans_found=len(orphans),
        orphans_too_young=len(orphans) - len(old),
        orphans_deleted=0 if dry_run else len(old) - len(failures),
        bytes_deleted=0 if dry_run else sum(f.size for f in old if f.uri not in failures),
        delete_failures=len(failures),
        dry_run=dry_run,
        seconds=round(time.monotonic() - started, 3),
        paths=tuple(sorted(f.uri for f in old)),
    )
