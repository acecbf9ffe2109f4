"""Table maintenance built on pyiceberg's commit machinery: compaction, snapshot expiry,
orphan-file removal. Maintenance commits never write the ingest offsets properties."""

from lakehouse.iceberg.maintenance.compaction import CompactionReport, compact
from lakehouse.iceberg.maintenance.planning import small_file_stats

__all__ = ["CompactionReport", "compact", "small_file_stats"]
