"""Commit replayed messages into a table below its committed offsets, exactly once.

The offset protocol (docs/exactly-once.md) says every offset below a table's committed offset
is handled: as a row or as a dead letter. A replayed dead letter lands *below* the committed
offset, so the trim-by-offset rule cannot guard it; the table's own rows do. Each attempt
loads the table, drops the rows whose (partition, offset) the table already holds, and
appends the rest as a compare-and-set on the table it looked at: a concurrent commit (another
replay, a normal run, a compaction) fails ours, and the next attempt looks again. Offsets are
never moved: rows at or above the committed offsets are never written here (a normal run
owns them). docs/schema-evolution.md#replaying-dead-letters has the whole protocol.
"""

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.catalog import retry_locked
from lakehouse.iceberg.commit import COMMIT_ID, committed_offsets
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.evolution import normalize_rows

log = logging.getLogger(__name__)

REPLAY_RUN_KEY = "lakehouse.replay-run-id"  # snapshot summary of a replay commit
PARTITION = "_kafka_partition"
OFFSET = "_kafka_offset"


@dataclass(frozen=True)
class ReplayCommit:
    """What `commit_replayed` did."""

    rows_written: int
    already_present: int  # rows the table held already (an earlier or concurrent replay)
    above_offsets: int  # rows at or above the committed offsets: left to normal runs
    snapshot_id: int | None
    attempts: int


def commit_replayed(
    catalog: Catalog,
    identifier: str,
    topic: str,
    rows: pa.Table,
    *,
    run_id: str,
    conform: Callable[[Table, pa.Table], pa.Table] | None = None,
    before_commit: Callable[[int], None] | None = None,
    max_attempts: int = 12,
) -> ReplayCommit:
    """Append the rows the table does not hold yet, below its committed offsets, exactly once.

    `conform(table, rows)` fits the rows to the table as loaded (see `commit_batch`);
    `before_commit(attempt)` is called just before each commit (a seam for tests that force
    an interleaving). Raises CommitConflictError after `max_attempts` lost races.
    """
    rows = normalize_rows(rows)
    commit_id = str(uuid.uuid4())
    for attempt in range(1, max_attempts + 1):
        table = retry_locked(lambda: catalog.load_table(identifier))
        fitted = conform(table, rows) if conform is not None else rows
        below = below_offsets(fitted, committed_offsets(table, topic))
        present = _present(table, below)
        new = below.filter(pc.invert(present)) if len(present) else below
        counts = (fitted.num_rows - below.num_rows, below.num_rows - new.num_rows)
        if new.num_rows == 0:
            return ReplayCommit(0, counts[1], counts[0], None, attempt)
        tx = cas_transaction(table)
        tx.append(new, snapshot_properties={COMMIT_ID: commit_id, REPLAY_RUN_KEY: run_id})
        if before_commit is not None:
            before_commit(attempt)
        try:
            latest = tx.commit_transaction()
        except (CommitFailedException, ValidationException) as exc:
            log.info("%s: replay commit lost a race (attempt %d): %s", identifier, attempt, exc)
            time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
            continue
        except Exception as exc:  # outcome unknown: look before trying again, never blindly
            log.warning("%s: replay commit outcome unknown: %r", identifier, exc)
            continue  # the next attempt finds our rows present if the commit landed
        snapshot = latest.current_snapshot()
        snapshot_id = snapshot.snapshot_id if snapshot is not None else None
        return ReplayCommit(new.num_rows, counts[1], counts[0], snapshot_id, attempt)
    raise CommitConflictError(f"{identifier}: replay lost {max_attempts} races")


def below_offsets(
    rows: pa.Table,
    committed: Mapping[int, int],
    partition_column: str = PARTITION,
    offset_column: str = OFFSET,
) -> pa.Table:
    """The rows below their partition's committed offset (a partition with none: no rows)."""
    if rows.num_rows == 0:
        return rows
    parts = pa.array(list(committed), pa.int64())
    floors = pa.array(list(committed.values()), pa.int64())
    index = pc.index_in(rows[partition_column].cast(pa.int64()), value_set=parts)
    limit = pc.fill_null(pc.take(floors, index), 0)
    return rows.filter(pc.less(rows[offset_column], limit))


def _present(table: Table, rows: pa.Table) -> pa.BooleanArray:
    """For each row, whether the table already holds its (partition, offset)."""
    if rows.num_rows == 0 or table.current_snapshot() is None:
        return pa.array([], pa.bool_())
    spans = rows.group_by(PARTITION).aggregate([(OFFSET, "min"), (OFFSET, "max")])
    where = " or ".join(
        f"({PARTITION} = {int(p)} and {OFFSET} >= {int(lo)} and {OFFSET} <= {int(hi)})"
        for p, lo, hi in zip(
            spans[PARTITION].to_pylist(),
            spans[f"{OFFSET}_min"].to_pylist(),
            spans[f"{OFFSET}_max"].to_pylist(),
            strict=True,
        )
    )
    held = table.scan(row_filter=where, selected_fields=(PARTITION, OFFSET)).to_arrow()
    mine = _pairs(rows).append_column("row", pa.array(range(rows.num_rows), pa.int64()))
    hits = mine.join(_pairs(held), keys=["p", "o"], join_type="left semi")
    return pc.is_in(mine["row"], value_set=hits["row"].combine_chunks())


def _pairs(rows: pa.Table) -> pa.Table:
    """(partition, offset) of each row, as int64 columns `p` and `o`."""
    return pa.table({"p": rows[PARTITION].cast(pa.int64()), "o": rows[OFFSET].cast(pa.int64())})
