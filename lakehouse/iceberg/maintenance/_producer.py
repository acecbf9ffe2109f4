"""A `replace` snapshot producer: swaps data files without changing table data.

pyiceberg 0.12 has no RewriteFiles (apache/iceberg-python#1092) nor RewriteManifests (#270).
Both are an overwrite of explicit files whose snapshot is labelled `replace` (the data did
not change), validated like Java's RewriteFiles: a concurrent append is fine, a concurrently
removed input file or a new delete file against an input fails. Optionally the producer
also merges the snapshot's data manifests, through pyiceberg's own merge manager.
"""

import contextlib
import uuid
from typing import Any

from pyiceberg.manifest import ManifestContent, ManifestFile
from pyiceberg.table import TableProperties, Transaction
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _ManifestMergeManager, _OverwriteFiles
from pyiceberg.table.update.validate import (
    _validate_data_files_exist,
    _validate_no_new_deletes_for_data_files,
)
from pyiceberg.typedef import EMPTY_DICT
from pyiceberg.utils.properties import property_as_int


class ReplaceFiles(_OverwriteFiles):
    """Delete and add data files in one `replace` snapshot, merging manifests if asked."""

    def __init__(
        self,
        transaction: Transaction,
        *,
        merge_manifests: bool,
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

    def _summary(self, snapshot_properties: dict[str, str] = EMPTY_DICT) -> Summary:
        # pyiceberg's summary totals only know append/overwrite/delete; the totals are the
        # same for a replace, only the label differs.
        summary = super()._summary(snapshot_properties)
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

    def _process_manifests(self, manifests: list[ManifestFile]) -> list[ManifestFile]:
        # Manifests that only record older deletions hold nothing a reader needs.
        live = [
            m
            for m in manifests
            if m.has_added_files()
            or m.has_existing_files()
            or m.added_snapshot_id == self.snapshot_id
        ]
        if not self._merge:
            return live
        properties = self._transaction.table_metadata.properties
        target: Any = property_as_int(
            properties,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
        )
        merger = _ManifestMergeManager(
            target_size_bytes=int(target),
            min_count_to_merge=2,
            merge_enabled=True,
            snapshot_producer=self,
        )
        data = [m for m in live if m.content == ManifestContent.DATA]
        deletes = [m for m in live if m.content == ManifestContent.DELETES]
        return merger.merge_manifests(data) + deletes

    def delete_merged_away_manifests(self) -> None:
        """After the commit: delete manifests this producer wrote but then merged into others
        (pyiceberg's merge manager leaves them behind, unreferenced)."""
        snapshot = self._transaction._table.metadata.snapshot_by_id(self.snapshot_id)
        if snapshot is None:
            return
        kept = {m.manifest_path for m in snapshot.manifests(self._io)}
        for path in self._written_manifests:
            if path not in kept:
                with contextlib.suppress(OSError):  # left for orphan removal
                    self._io.delete(path)
