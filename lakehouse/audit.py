"""Audits of a bronze table against its offsets: the oracle behind the asset checks.

- the offset chain: each ingest commit starts where the previous one ended (no gap, no overlap);
- conservation: rows + dead letters = offsets consumed, and no offset appears twice.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from pyiceberg.expressions import AlwaysTrue

from lakehouse.iceberg.commit import RANGE_SUMMARY_KEY, TOPIC_SUMMARY_KEY, committed_offsets


@dataclass
class ChainReport:
    """The commits seen and every break in the chain."""

    commits: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ConservationReport:
    """Counts behind `rows + dead letters = offsets consumed`.

    A dead letter whose message is in the table too was replayed (docs/schema-evolution.md):
    it counts once, as a row (`replayed`), whether the dead-letter table marked it yet or not.
    """

    rows: int = 0
    dead_letters: int = 0
    offsets_consumed: int = 0
    duplicates: int = 0
    replayed: int = 0

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.rows + self.dead_letters == self.offsets_consumed


def check_offset_chain(table: Any, topic: str) -> ChainReport:
    """Walk the main branch oldest-first and check each ingest range starts at the last end."""
    report = ChainReport()
    snapshots = list(table.snapshots())
    by_id = {s.snapshot_id: s for s in snapshots}
    lineage = []
    current = table.current_snapshot()
    while current is not None:
        lineage.append(current)
        parent = current.parent_snapshot_id
        current = by_id.get(parent) if parent is not None else None
    last: dict[int, int] = {}
    for snapshot in reversed(lineage):
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get(TOPIC_SUMMARY_KEY) != topic or RANGE_SUMMARY_KEY not in summary:
            continue
        report.commits += 1
        for key, (start, end) in json.loads(summary[RANGE_SUMMARY_KEY]).items():
            partition = int(key)
            if partition in last and start != last[partition]:
                kind = "gap" if start > last[partition] else "overlap"
                report.problems.append(
                    f"snapshot {snapshot.snapshot_id}: partition {partition} starts at {start} "
                    f"but the previous commit ended at {last[partition]} ({kind})"
                )
            if end < start:
                report.problems.append(
                    f"snapshot {snapshot.snapshot_id}: partition {partition} range {start}..{end}"
                )
            last[partition] = end
    committed = committed_offsets(table, topic)
    for partition, end in last.items():
        if committed.get(partition) != end:
            report.problems.append(
                f"partition {partition}: last commit ended at {end} but the table's offsets "
                f"say {committed.get(partition)}"
            )
    return report


def _offsets_frame(
    table: Any, partition_col: str, offset_col: str, row_filter: Any
) -> pl.DataFrame:
    scan = table.scan(row_filter=row_filter, selected_fields=(partition_col, offset_col))
    frame = pl.DataFrame(scan.to_arrow())
    return frame.rename({partition_col: "partition", offset_col: "offset"})


def check_conservation(
    rows_table: Any, dead_letter_table: Any | None, topic: str
) -> ConservationReport:
    """Count rows and dead letters below the committed offsets against the offsets consumed."""

    committed = committed_offsets(rows_table, topic)
    limits = pl.DataFrame(
        {"partition": list(committed), "next": list(committed.values())},
        schema={"partition": pl.Int32, "next": pl.Int64},
    )

    def inside(frame: pl.DataFrame) -> pl.DataFrame:
        typed = frame.cast({"partition": pl.Int32, "offset": pl.Int64})
        return typed.join(limits, on="partition", how="inner").filter(
            pl.col("offset") < pl.col("next")
        )

    rows = inside(_offsets_frame(rows_table, "_kafka_partition", "_kafka_offset", AlwaysTrue()))
    dead = rows.clear()
    if dead_letter_table is not None:
        where = f"topic = '{topic}'"  # Kafka topic names never hold quotes
        dead = inside(_offsets_frame(dead_letter_table, "partition", "offset", where))
    keys = ["partition", "offset"]
    replayed = dead.join(rows, on=keys, how="semi")
    waiting = dead.join(rows, on=keys, how="anti")
    report = ConservationReport(
        rows=rows.height, dead_letters=waiting.height, replayed=replayed.height
    )
    report.duplicates = (rows.height - rows.select(keys).unique().height) + (
        dead.height - dead.select(keys).unique().height
    )
    both = pl.concat([rows.select(keys), waiting.select(keys)])
    firsts = both.group_by("partition").agg(pl.col("offset").min().alias("first"))
    consumed = firsts.join(limits, on="partition").select((pl.col("next") - pl.col("first")).sum())
    report.offsets_consumed = int(consumed.item() or 0)
    return report
