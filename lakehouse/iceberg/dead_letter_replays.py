"""Which dead letters to replay, and marking them once replayed (or failed again).

The dead-letter table gets two optional columns the first time it is replayed from:
`replayed_at` (when the message was found in, or written to, its bronze table) and
`replay_run_id` (the last replay that looked at it). A message that still fails keeps its row
with the new `error_kind` and `error_message`. Marking rewrites exactly those rows (delete by
(topic, partition, offset) and append the updated rows, one commit) as a compare-and-set: a
concurrent commit fails it and it reads the rows again.
"""

import logging
import random
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, Or, Reference
from pyiceberg.expressions.literals import literal
from pyiceberg.table import Table

from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.catalog import retry_locked
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.dead_letters import OFFSET_COLUMN, PARTITION_COLUMN
from lakehouse.iceberg.evolution import evolve_schema

log = logging.getLogger(__name__)

REPLAYED_AT = "replayed_at"
REPLAY_RUN_ID = "replay_run_id"
REPLAY_COLUMNS = pa.schema(
    [pa.field(REPLAYED_AT, pa.timestamp("us", tz="UTC")), pa.field(REPLAY_RUN_ID, pa.string())]
)

Key = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True)
class Selection:
    """Which dead letters of a topic to take (empty: any)."""

    error_kinds: frozenset[str] = frozenset()
    schema_ids: frozenset[int] = frozenset()
    ranges: Mapping[int, tuple[int, int]] | None = None  # partition → [start, end)


@dataclass(frozen=True)
class StillFailing:
    """A replayed message that failed again, and why."""

    kind: str
    message: str


def with_replay_columns(catalog: Catalog, identifier: str) -> Table:
    """The dead-letter table, given the replay columns if it lacks them."""
    for _ in range(12):
        table = retry_locked(lambda: catalog.load_table(identifier))
        if REPLAYED_AT in table.schema().column_names:
            return table
        try:
            evolve_schema(table, REPLAY_COLUMNS)
        except CommitFailedException:
            continue  # someone else changed it: look again
    raise CommitConflictError(f"{identifier}: cannot add the replay columns")


def unreplayed(table: Table, topic: str, selection: Selection) -> pa.Table:
    """The topic's dead letters not replayed yet that `selection` takes."""
    where: BooleanExpression = EqualTo(term=Reference("topic"), value=literal(topic))
    if selection.error_kinds:
        kinds = {literal(k) for k in selection.error_kinds}
        where = And(where, In(term=Reference("error_kind"), values=kinds))
    rows = table.scan(row_filter=where).to_arrow()
    keep = pc.is_null(rows[REPLAYED_AT])
    if selection.schema_ids:
        ids = pa.array(sorted(selection.schema_ids), pa.int32())
        keep = pc.and_(keep, pc.fill_null(pc.is_in(rows["schema_id"], value_set=ids), False))
    if selection.ranges is not None:
        inside = pa.repeat(pa.scalar(False), rows.num_rows)
        for partition, (start, end) in selection.ranges.items():
            span = pc.and_(
                pc.equal(rows[PARTITION_COLUMN], partition),
                pc.and_(
                    pc.greater_equal(rows[OFFSET_COLUMN], start), pc.less(rows[OFFSET_COLUMN], end)
                ),
            )
            inside = pc.or_(inside, span)
        keep = pc.and_(keep, inside)
    chosen = rows.filter(keep)
    return chosen.sort_by([(PARTITION_COLUMN, "ascending"), (OFFSET_COLUMN, "ascending")])


def mark(
    catalog: Catalog,
    identifier: str,
    topic: str,
    replayed: Collection[Key],
    failing: Mapping[Key, StillFailing],
    run_id: str,
    *,
    max_attempts: int = 12,
) -> int:
    """Mark `replayed` messages replayed and give `failing` ones their new reason; rows
    another replay marked meanwhile are left as they are. Returns the rows rewritten."""
    wanted = set(replayed) | set(failing)
    if not wanted:
        return 0
    now = datetime.now(UTC)
    for attempt in range(1, max_attempts + 1):
        table = retry_locked(lambda: catalog.load_table(identifier))
        current = table.scan(row_filter=_matching(topic, wanted)).to_arrow()
        current = current.filter(pc.is_null(current[REPLAYED_AT]))
        keys = _keys(current)
        mine = [i for i, key in enumerate(keys) if key in wanted]
        if not mine:
            return 0
        rows = current.take(pa.array(mine, pa.int64()))
        updated = _updated(rows, [keys[i] for i in mine], set(replayed), failing, run_id, now)
        tx = cas_transaction(table)
        tx.overwrite(updated, overwrite_filter=_matching(topic, {keys[i] for i in mine}))
        try:
            tx.commit_transaction()
        except (CommitFailedException, ValidationException) as exc:
            log.info("%s: marking lost a race (attempt %d): %s", identifier, attempt, exc)
            time.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
            continue
        return updated.num_rows
    raise CommitConflictError(
        f"{identifier}: marking replayed dead letters lost {max_attempts} races"
    )


def _keys(rows: pa.Table) -> list[Key]:
    return list(
        zip(rows[PARTITION_COLUMN].to_pylist(), rows[OFFSET_COLUMN].to_pylist(), strict=True)
    )


def _matching(topic: str, keys: Collection[Key]) -> BooleanExpression:
    """Rows of `topic` at exactly these (partition, offset)s."""
    by_partition: dict[int, set[int]] = {}
    for partition, offset in keys:
        by_partition.setdefault(partition, set()).add(offset)
    parts: list[BooleanExpression] = [
        And(
            EqualTo(term=Reference(PARTITION_COLUMN), value=literal(partition)),
            In(term=Reference(OFFSET_COLUMN), values={literal(o) for o in offsets}),
        )
        for partition, offsets in sorted(by_partition.items())
    ]
    any_of = parts[0] if len(parts) == 1 else Or(*parts)
    return And(EqualTo(term=Reference("topic"), value=literal(topic)), any_of)


def _updated(
    rows: pa.Table,
    keys: list[Key],
    replayed: set[Key],
    failing: Mapping[Key, StillFailing],
    run_id: str,
    now: datetime,
) -> pa.Table:
    kinds = rows["error_kind"].to_pylist()
    messages = rows["error_message"].to_pylist()
    stamps: list[datetime | None] = []
    for i, key in enumerate(keys):
        if key in replayed:
            stamps.append(now)
        else:
            stamps.append(None)
            kinds[i], messages[i] = failing[key].kind, failing[key].message
    columns = {
        "error_kind": pa.array(kinds, rows.schema.field("error_kind").type),
        "error_message": pa.array(messages, rows.schema.field("error_message").type),
        REPLAYED_AT: pa.array(stamps, rows.schema.field(REPLAYED_AT).type),
        REPLAY_RUN_ID: pa.array([run_id] * len(keys), rows.schema.field(REPLAY_RUN_ID).type),
    }
    for name, column in columns.items():
        rows = rows.set_column(rows.schema.get_field_index(name), name, column)
    return rows
