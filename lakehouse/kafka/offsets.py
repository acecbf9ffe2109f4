"""Offset planning: pure functions from committed offsets and watermarks to read ranges.

No I/O here; `reader.py` reads the ranges, `lakehouse.iceberg.commit` stores the offsets.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from lakehouse.errors import OffsetGapError


@dataclass(frozen=True, order=True)
class PartitionRange:
    """Offsets `start` (inclusive) to `end` (exclusive) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        """How many offsets the range spans (control records included)."""
        return max(0, self.end - self.start)


def plan_ranges(
    topic: str,
    committed: Mapping[int, int],
    low: Mapping[int, int],
    high: Mapping[int, int],
) -> list[PartitionRange]:
    """Ranges still to ingest: from the table's committed offset (or the partition's start) to
    the high watermark. Partitions with nothing to read are left out.

    Raises OffsetGapError when the table is ahead of the topic (topic deleted and recreated)
    or behind its retention (messages deleted before they were ingested): both need a person,
    and silently skipping or re-reading would break exactly-once.
    """
    ranges: list[PartitionRange] = []
    for partition in sorted(high):
        start = committed.get(partition, low[partition])
        if start > high[partition]:
            raise OffsetGapError(
                f"{topic}[{partition}]: the table has offsets up to {start} but the topic ends at "
                f"{high[partition]}; was the topic deleted and recreated? Refusing to continue."
            )
        if start < low[partition]:
            raise OffsetGapError(
                f"{topic}[{partition}]: the table's next offset {start} is below the earliest "
                f"offset {low[partition]} still in Kafka; messages were deleted by retention "
                "before they were ingested. Refusing to skip them silently."
            )
        if start < high[partition]:
            ranges.append(PartitionRange(partition, start, high[partition]))
    missing = set(committed) - set(high)
    if missing:
        raise OffsetGapError(
            f"{topic}: the table has offsets for partitions {sorted(missing)} "
            "that the topic no longer has"
        )
    return ranges


def total_lag(ranges: list[PartitionRange]) -> int:
    """Offsets waiting across all ranges."""
    return sum(r.count for r in ranges)


def range_key(topic: str, ranges: list[PartitionRange]) -> str:
    """A deterministic text naming a planned range (used for Dagster run keys)."""
    parts = ",".join(f"{r.partition}:{r.start}-{r.end}" for r in sorted(ranges))
    return f"{topic}@{parts}"
