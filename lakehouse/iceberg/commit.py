"""The one commit path every writer uses: rows and Kafka offsets in one Iceberg commit.

Offsets live in the table property `lakehouse.offsets.<topic>` = JSON {"<partition>": next}
and are set in the same transaction as the append. Each commit is a compare-and-set
(`compare_and_set.cas_transaction`), so a concurrent commit fails ours and `commit_batch`
reloads, re-reads the offsets, drops rows already in the table and tries again. The
protocol and its failure cases are in docs/exactly-once.md.
"""

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    ValidationException,
)
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from lakehouse.errors import (
    CommitConflictError,
    LakehouseError,
    OffsetGapError,
    SchemaEvolutionError,
)
from lakehouse.iceberg.catalog import retry_locked
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.data_files import write_data_files
from lakehouse.iceberg.evolution import evolve_schema, fits_schema, normalize_rows

log = logging.getLogger(__name__)

OFFSETS_PREFIX = "lakehouse.offsets."
TOPIC_ID_PREFIX = "lakehouse.topic-id."
LAST_COMMIT_ID = "lakehouse.last-commit-id"
COMMIT_ID = "lakehouse.commit-id"  # snapshot-summary key: find our commit after an error
TOPIC_SUMMARY_KEY = "lakehouse.topic"
RANGE_SUMMARY_KEY = "lakehouse.range"  # snapshot-summary key: {"<partition>": [start, next]}
MANIFEST_MERGE_PROPERTY = "commit.manifest-merge.enabled"


@dataclass(frozen=True)
class CommitOutcome:
    """What one `commit_batch` call did."""

    table: str
    topic: str
    rows_written: int
    rows_skipped: int
    offsets_before: dict[int, int]
    offsets_after: dict[int, int]
    snapshot_id: int | None
    data_files_added: int = 0
    bytes_added: int = 0
    attempts: int = 1
    conflicts: int = 0
    commit_id: str | None = None
    seconds: float = 0.0
    schema_changed: bool = False
    notes: tuple[str, ...] = field(default=())
    latest: Table | None = field(default=None, repr=False, compare=False)
    """The table as this commit left it, for the next `commit_batch(table=...)`; None when
    nothing was committed."""

    @property
    def already_committed(self) -> bool:
        """True when the table already held everything (nothing new was committed)."""
        return self.snapshot_id is None


def offsets_key(topic: str) -> str:
    """The table property holding `topic`'s next offsets."""
    return OFFSETS_PREFIX + topic


def topic_id_key(topic: str) -> str:
    """The table property holding the Kafka id of the topic whose offsets the table keeps."""
    return TOPIC_ID_PREFIX + topic


def committed_topic_id(table: Table, topic: str) -> str | None:
    """The Kafka topic id recorded with the offsets (None for tables written before ids)."""
    return table.properties.get(topic_id_key(topic)) or None


def committed_offsets(table: Table, topic: str) -> dict[int, int]:
    """The next offset per partition committed to `table` for `topic` ({} if none yet)."""
    raw = table.properties.get(offsets_key(topic))
    if not raw:
        return {}
    try:
        return {int(p): int(o) for p, o in json.loads(raw).items()}
    except (ValueError, AttributeError, TypeError) as exc:
        raise LakehouseError(
            f"{table.name()}: property {offsets_key(topic)} is not offsets JSON: {raw!r}"
        ) from exc


@dataclass(frozen=True)
class StagedFiles:
    """Data files already written for a batch's rows, against one schema and partition spec.

    `commit_batch` commits them as they are when the table still has that schema and spec
    and none of the rows is already in the table; otherwise it writes the rows again.
    Written ahead of the commit, they take the Parquet encoding out of the serial commit
    step, so one batch's files are written while the previous batch commits.
    """

    rows: pa.Table
    data_files: tuple[DataFile, ...]
    schema_id: int
    spec_id: int


def stage_files(
    catalog: Catalog, identifier: str, rows: pa.Table, table: Table | None = None
) -> StagedFiles | None:
    """Write `rows` as data files of the table's current schema and spec, uncommitted.

    `table`, if given, is used as it is (e.g. `CommitOutcome.latest`): files written for a
    schema or spec that changed since are not committed, the rows are written again. None
    (nothing written) when there is nothing to write or the rows need what only the commit
    can do: a missing table, a schema change, a merging append. Files of a batch never
    committed are orphans, which orphan-file removal deletes.
    """
    rows = normalize_rows(rows)
    if rows.num_rows == 0:
        return None
    if table is None:
        try:
            table = catalog.load_table(identifier)
        except NoSuchTableError:
            return None
    if table.properties.get(MANIFEST_MERGE_PROPERTY, "false").lower() == "true":
        return None
    if not fits_schema(table.schema(), rows.schema):
        return None
    metadata = table.metadata
    data_files = tuple(write_data_files(table.io, metadata, rows))
    return StagedFiles(rows, data_files, metadata.current_schema_id, metadata.default_spec_id)


def commit_batch(
    catalog: Catalog,
    identifier: str,
    topic: str,
    rows: pa.Table,
    start_offsets: Mapping[int, int],
    next_offsets: Mapping[int, int],
    *,
    partition_column: str = "_kafka_partition",
    offset_column: str = "_kafka_offset",
    snapshot_properties: Mapping[str, str] | None = None,
    table_properties: Mapping[str, str] | None = None,
    max_attempts: int = 12,
    lock_budget_seconds: float = 60.0,
    staged: StagedFiles | None = None,
    table: Table | None = None,
    gaps_allowed: bool = False,
    conform: Callable[[Table, pa.Table], pa.Table] | None = None,
) -> CommitOutcome:
    """Append the rows of offsets [start, next) per partition with the offsets, exactly once.

    Rows whose offset is below the table's committed offset are dropped (already there); a
    partition whose batch starts after the committed offset raises OffsetGapError (a
    partition with no committed offset accepts any start: the planner chose it). Returns an
    outcome with `snapshot_id=None` when the table already held everything.
    `table_properties` (e.g. the Kafka topic id) are set in the same transaction.
    `staged` (from `stage_files` on these rows) is committed instead of writing the rows
    again whenever the table still fits it. `table` (the previous outcome's `latest`) is
    tried first instead of loading the table; if another commit came in between, the
    catalog refuses ours and the table is loaded as usual. `gaps_allowed` is for a table
    that hears of some batches only (the dead letters): a batch may start past the table's
    committed offsets; overlaps are still trimmed. `conform(table, rows)`, called on every
    attempt with the table as loaded, gives the rows in that table's column names and types
    (rows named after an older schema of the table are renamed by field id; `rows` itself
    when nothing changes).
    Raises CommitConflictError after `max_attempts` lost races, SchemaEvolutionError when
    the rows change the schema in a way Iceberg cannot take (nothing committed).
    """
    rows = staged.rows if staged is not None else normalize_rows(rows)
    _check_batch(rows, start_offsets, next_offsets, partition_column, offset_column)
    started = time.monotonic()
    commit_id = str(uuid.uuid4())
    conflicts = 0
    unknown = 0
    last_error: Exception | None = None
    cached = table
    for attempt in range(1, max_attempts + 1):
        table = cached if cached is not None else _load(catalog, identifier, lock_budget_seconds)
        before = committed_offsets(table, topic)
        start = _widened(start_offsets, before) if gaps_allowed else start_offsets
        nothing_new = all(n <= before.get(p, start[p]) for p, n in next_offsets.items())
        if cached is not None and (nothing_new or _gap(start, before)):
            cached = None  # decided on a freshly loaded table only
            continue
        _check_gap(identifier, topic, start, before)
        after = dict(before)
        for p, nxt in next_offsets.items():
            after[p] = max(before.get(p, nxt), nxt)
        fitted = conform(table, rows) if conform is not None else rows
        new_rows = _trim(fitted, before, partition_column, offset_column)
        skipped = fitted.num_rows - new_rows.num_rows
        if nothing_new:
            return CommitOutcome(
                table=identifier,
                topic=topic,
                rows_written=0,
                rows_skipped=skipped,
                offsets_before=before,
                offsets_after=after,
                snapshot_id=None,
                attempts=attempt,
                conflicts=conflicts,
                seconds=time.monotonic() - started,
            )
        summary = {
            **(snapshot_properties or {}),
            COMMIT_ID: commit_id,
            TOPIC_SUMMARY_KEY: topic,
            RANGE_SUMMARY_KEY: _dump_ranges(before, after, start),
        }
        tx = cas_transaction(table)
        if new_rows.num_rows == 0:  # offsets only: an empty snapshot, the schema untouched
            new_rows = table.schema().as_arrow().empty_table()
        if staged is not None and new_rows is staged.rows and _still_fits(table, staged):
            schema_changed = False
            with tx.update_snapshot(snapshot_properties=summary).fast_append() as append:
                for data_file in staged.data_files:
                    append.append_data_file(data_file)
        else:
            schema_changed = evolve_schema(tx, new_rows.schema)
            try:
                tx.append(new_rows, snapshot_properties=summary)
            except ValueError as exc:  # pyiceberg's schema compatibility check
                raise SchemaEvolutionError(
                    f"{identifier}: rows do not fit the table: {exc}"
                ) from exc
        tx.set_properties(
            {
                **(table_properties or {}),
                offsets_key(topic): _dump(after),
                LAST_COMMIT_ID: commit_id,
            }
        )
        snapshot: Snapshot | None
        latest: Table | None = None
        try:
            latest = tx.commit_transaction()
            snapshot = _snapshot_with(latest, commit_id)
        except (CommitFailedException, ValidationException) as exc:
            conflicts += 1
            log.info("%s: commit lost a race (attempt %d): %s", identifier, attempt, exc)
            if cached is None:
                _backoff(attempt)
            cached = None  # stale: load the table from now on
            continue
        except Exception as exc:  # outcome unknown: look before retrying, never blindly
            cached = None
            unknown += 1
            last_error = exc
            log.warning("%s: commit outcome unknown (attempt %d): %r", identifier, attempt, exc)
            snapshot = _find_commit(catalog, identifier, commit_id, lock_budget_seconds)
            if snapshot is None:
                _backoff(attempt)
                continue
        return _outcome(
            identifier,
            topic,
            new_rows.num_rows,
            skipped,
            before,
            after,
            snapshot,
            attempt,
            conflicts,
            commit_id,
            time.monotonic() - started,
            schema_changed,
            latest,
        )
    raise CommitConflictError(
        f"{identifier}: no commit after {max_attempts} attempts "
        f"({conflicts} lost races, {unknown} unknown outcomes)"
    ) from last_error


def _still_fits(table: Table, staged: StagedFiles) -> bool:
    """The table has the schema and partition spec the staged files were written for."""
    metadata = table.metadata
    return (
        metadata.current_schema_id == staged.schema_id
        and metadata.default_spec_id == staged.spec_id
    )


def _check_batch(
    rows: pa.Table,
    start: Mapping[int, int],
    nxt: Mapping[int, int],
    partition_column: str,
    offset_column: str,
) -> None:
    """Programming errors: rows outside [start, next) or offsets going backwards."""
    if set(start) != set(nxt):
        raise ValueError("start_offsets and next_offsets must name the same partitions")
    for p in nxt:
        if nxt[p] < start[p]:
            raise ValueError(f"partition {p}: next offset {nxt[p]} < start {start[p]}")
    if rows.num_rows == 0:
        return
    for column in (partition_column, offset_column):
        if column not in rows.column_names:
            raise ValueError(f"rows have no {column!r} column")
    stats = rows.group_by(partition_column).aggregate(
        [(offset_column, "min"), (offset_column, "max")]
    )
    for p, lo, hi in zip(
        stats[partition_column].to_pylist(),
        stats[f"{offset_column}_min"].to_pylist(),
        stats[f"{offset_column}_max"].to_pylist(),
        strict=True,
    ):
        if p not in nxt or lo < start[p] or hi >= nxt[p]:
            raise ValueError(f"partition {p}: rows with offsets {lo}..{hi} outside the batch range")


def _widened(start: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, int]:
    """The batch's start moved down to the table's committed offsets (no gap)."""
    return {p: min(s, committed.get(p, s)) for p, s in start.items()}


def _gap(start: Mapping[int, int], committed: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    """{partition: (committed, batch start)} where the batch would start past the table."""
    return {p: (committed[p], s) for p, s in start.items() if p in committed and s > committed[p]}


def _check_gap(
    identifier: str, topic: str, start: Mapping[int, int], committed: Mapping[int, int]
) -> None:
    gaps = _gap(start, committed)
    if gaps:
        detail = ", ".join(f"[{p}] committed {c}, batch starts {s}" for p, (c, s) in gaps.items())
        raise OffsetGapError(f"{identifier} {topic}: batch would leave a gap: {detail}")


def _trim(rows: pa.Table, committed: Mapping[int, int], part_col: str, off_col: str) -> pa.Table:
    """Rows at or above the committed offset of their partition."""
    if rows.num_rows == 0 or not committed:
        return rows
    parts = pa.array(list(committed), pa.int64())
    floors = pa.array(list(committed.values()), pa.int64())
    index = pc.index_in(rows[part_col].cast(pa.int64()), value_set=parts)
    floor = pc.fill_null(pc.take(floors, index), 0)
    keep = pc.greater_equal(rows[off_col], floor)
    # The usual case (no overlap with the table) keeps every row: no copy of the batch.
    return rows if pc.all(keep, skip_nulls=False).as_py() else rows.filter(keep)


def _dump_ranges(
    before: Mapping[int, int], after: Mapping[int, int], start: Mapping[int, int]
) -> str:
    """The offsets this commit adds per partition, for the offset-chain audit."""
    ranges = {
        str(p): [before.get(p, s), after[p]]
        for p, s in sorted(start.items())
        if after[p] > before.get(p, s)
    }
    return json.dumps(ranges, separators=(",", ":"))


def _dump(offsets: Mapping[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(offsets.items())}, separators=(",", ":"))


def _load(catalog: Catalog, identifier: str, budget: float) -> Table:
    """The table as the catalog has it now."""
    try:
        return retry_locked(lambda: catalog.load_table(identifier), budget)
    except NoSuchTableError as exc:
        raise LakehouseError(f"table {identifier} does not exist; ensure_table it") from exc


def _find_commit(
    catalog: Catalog, identifier: str, commit_id: str, budget: float
) -> Snapshot | None:
    """After an unknown outcome: our snapshot, if the commit landed after all."""
    return _snapshot_with(_load(catalog, identifier, budget), commit_id)


def _snapshot_with(table: Table, commit_id: str) -> Snapshot | None:
    for snapshot in reversed(table.metadata.snapshots):
        if snapshot.summary is not None and snapshot.summary.get(COMMIT_ID) == commit_id:
            return snapshot
    return None


def _backoff(attempt: int) -> None:
    time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))


def _outcome(
    identifier: str,
    topic: str,
    written: int,
    skipped: int,
    before: dict[int, int],
    after: dict[int, int],
    snapshot: Snapshot | None,
    attempts: int,
    conflicts: int,
    commit_id: str,
    seconds: float,
    schema_changed: bool,
    latest: Table | None,
) -> CommitOutcome:
    summary = snapshot.summary if snapshot is not None and snapshot.summary else None
    return CommitOutcome(
        table=identifier,
        topic=topic,
        rows_written=written,
        rows_skipped=skipped,
        offsets_before=before,
        offsets_after=after,
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        data_files_added=int(summary.get("added-data-files") or 0) if summary else 0,
        bytes_added=int(summary.get("added-files-size") or 0) if summary else 0,
        attempts=attempts,
        conflicts=conflicts,
        commit_id=commit_id,
        seconds=seconds,
        schema_changed=schema_changed,
        latest=latest,
    )


__all__ = [
    "COMMIT_ID",
    "LAST_COMMIT_ID",
    "OFFSETS_PREFIX",
    "CommitOutcome",
    "SchemaEvolutionError",
    "StagedFiles",
    "commit_batch",
    "committed_offsets",
    "offsets_key",
    "stage_files",
]
