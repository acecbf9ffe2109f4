"""Table maintenance built on pyiceberg's commit machinery: compaction, snapshot expiry,
orphan-file removal. Maintenance commits never write the ingest offsets properties."""

from lakehouse.iceberg.maintenance.compaction import CompactionReport, compact
from lakehouse.iceberg.maintenance.expiry import ExpiryReport, expire_snapshots
from lakehouse.iceberg.maintenance.orphans import OrphanReport, remove_orphan_files
from lakehouse.iceberg.maintenance.planning import small_file_stats

__all__ = [
    "CompactionReport",
    "ExpiryReport",
    "OrphanReport",
    "compact",
    "expire_snapshots",
    "remove_orphan_files",
    "small_file_stats",
]
