"""Decode a batch of Kafka values into one Arrow table plus dead-letter entries."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.avro.fast import FastPathError, read_fast
from lakehouse.avro.registry import SchemaSource
from lakehouse.avro.safe import DEFAULT_MAX_ZERO_SIZE_ITEMS, SafeDecoder
from lakehouse.avro.wire import DEFAULT_MAX_VALUE_BYTES, HEADER_BYTES, MAGIC, parse_frame
from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.errors import DecodeError

# Below this many datums a failed bulk read is settled per message on the safe path.
_BISECT_FLOOR = 8


class Failure(NamedTuple):
    """One value that cannot be decoded: its position in the batch, kind and context."""

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    kind: str
    message: str
    schema_id: int | None


@dataclass
class DecodeResult:
    """Good rows (`table`, `row_index` into the input, `schema_ids`) and the failures;
    `target_version` is the target's version the rows were projected onto (None: no target)."""

    table: pa.Table
    row_index: pa.Int64Array
    schema_ids: pa.Int32Array
    failures: list[Failure] = field(default_factory=list)
    target_version: int | None = None


@dataclass(frozen=True)
class Projections:
    """For each writer schema id: how its decoded rows become the target's rows, or why the
    target cannot take them (its messages become failures of that error's kind)."""

    version: int
    by_schema_id: Mapping[int, Callable[[pa.Table], pa.Table] | DecodeError]


class Target(Protocol):
    """Where decoded rows go (e.g. an Iceberg table whose columns they must match)."""

    def projections(self, writers: Sequence[WriterSchema]) -> Projections:
        """One projection (or refusal) per writer schema, all against one target version."""
        ...


@dataclass
class _Group:
    writer: WriterSchema
    indexes: pa.Int64Array  # position in the batch of each datum
    datums: pa.LargeBinaryArray


def decode_values(
    values: pa.LargeBinaryArray | Sequence[bytes | None],
    schemas: SchemaSource,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    max_zero_size_items: int = DEFAULT_MAX_ZERO_SIZE_ITEMS,
    target: Target | None = None,
) -> DecodeResult:
    """Decode Confluent-framed Avro values, grouped by writer schema.

    Bad values become `failures`; `RegistryUnavailableError` propagates (never a failure).
    With a `target`, each writer schema's rows are projected onto it (asked once per batch),
    and the messages of a writer schema it refuses become failures.
    """
    failures: list[Failure] = []
    groups: list[_Group] = []
    for schema_id, indexes, datums in _split_frames(values, max_value_bytes, failures):
        try:
            groups.append(_Group(schemas.writer_schema(schema_id), indexes, datums))
        except DecodeError as exc:
            failures += [Failure(i, exc.kind, exc.message, schema_id) for i in indexes.to_pylist()]
    shapes = target.projections([g.writer for g in groups]) if target and groups else None
    parts: list[tuple[WriterSchema, pa.Table, pa.Int64Array]] = []
    for group in groups:
        project = shapes.by_schema_id[group.writer.schema_id] if shapes else None
        if isinstance(project, DecodeError):
            failures += [
                _failure(group, i, project.kind, project.message) for i in range(len(group.datums))
            ]
            continue
        table, rows = _decode_group(group, failures, max_zero_size_items)
        parts.append((group.writer, project(table) if project else table, rows))
    failures.sort(key=lambda f: f.index)
    result = _combine(parts, failures)
    result.target_version = shapes.version if shapes else None
    return result


def _split_frames(
    values: pa.LargeBinaryArray | Sequence[bytes | None],
    max_value_bytes: int,
    failures: list[Failure],
) -> list[tuple[int, pa.Int64Array, pa.LargeBinaryArray]]:
    """(schema id, batch positions, datums) per schema id; bad frames go to `failures`."""
    array = values if isinstance(values, pa.Array) else pa.array(values, pa.large_binary())
    size = pc.binary_length(array)
    magic = pc.equal(pc.binary_slice(array, 0, 1), pa.scalar(bytes([MAGIC]), pa.large_binary()))
    good = pc.fill_null(
        pc.and_(
            pc.and_(pc.greater(size, HEADER_BYTES), pc.less_equal(size, max_value_bytes)), magic
        ),
        False,
    )
    bad = pc.indices_nonzero(pc.invert(good)).to_pylist()
    for index in bad:
        try:
            parse_frame(array[index].as_py(), max_value_bytes)  # raises for every such value
        except DecodeError as exc:
            failures.append(Failure(index, exc.kind, exc.message, None))
    all_good = not bad
    positions = _identity(len(array)) if all_good else pc.indices_nonzero(good).cast(pa.int64())
    framed = array if all_good else pc.filter(array, good)
    ids = pc.binary_slice(framed, 1, HEADER_BYTES)
    unique_ids = pc.unique(ids).to_pylist()
    groups = []
    for raw_id in unique_ids:
        if len(unique_ids) == 1:  # the usual batch: one writer schema, no filtering needed
            mine_frames, mine_positions = framed, positions
        else:
            mine = pc.equal(ids, pa.scalar(raw_id, pa.large_binary()))
            mine_frames, mine_positions = pc.filter(framed, mine), pc.filter(positions, mine)
        # an explicit stop: without one pyarrow 26 computes a negative output size
        datums = pc.binary_slice(mine_frames, HEADER_BYTES, max_value_bytes + 1)
        schema_id = int.from_bytes(raw_id, "big", signed=True)
        groups.append((schema_id, mine_positions, datums))
    return groups


def _identity(n: int) -> pa.Int64Array:
    """0, 1, ..., n-1."""
    if n == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)


def _ascending(indexes: pa.Int64Array) -> bool:
    """Strictly increasing (already in batch order)."""
    if len(indexes) < 2:
        return True
    return bool(pc.all(pc.less(indexes[:-1], indexes[1:])).as_py())


def _decode_group(
    group: _Group, failures: list[Failure], max_zero: int
) -> tuple[pa.Table, pa.Int64Array]:
    """The group's good rows in batch order, and their positions in the batch."""
    tables: list[pa.Table] = []
    positions: list[range | list[int]] = []
    pending = list(range(len(group.datums)))
    if group.writer.path == "fast":
        pending = _fast(group, 0, len(group.datums), tables, positions)
        if not pending:
            # The fast reads covered the whole group, in order: nothing to reorder.
            table = pa.concat_tables(tables) if tables else group.writer.arrow.empty_table()
            return table, group.indexes
    if pending:
        table, done = _safe(group, pending, failures, max_zero)
        tables.append(table)
        positions.append(done)
    where = [p for part in positions for p in part]
    order = sorted(range(len(where)), key=where.__getitem__)
    table = pa.concat_tables(tables) if tables else group.writer.arrow.empty_table()
    return (
        table.take(pa.array(order, pa.int64())),
        group.indexes.take(pa.array([where[i] for i in order], pa.int64())),
    )


def _fast(
    group: _Group,
    lo: int,
    hi: int,
    tables: list[pa.Table],
    positions: list[range | list[int]],
) -> list[int]:
    """Read group[lo:hi] with polars, bisecting around failures; returns positions left over."""
    try:
        table = read_fast(group.writer, group.datums[lo:hi])
    except FastPathError:
        if hi - lo <= _BISECT_FLOOR:
            return list(range(lo, hi))
        mid = (lo + hi) // 2
        return _fast(group, lo, mid, tables, positions) + _fast(group, mid, hi, tables, positions)
    tables.append(table)
    positions.append(range(lo, hi))
    return []


def _safe(
    group: _Group, pending: list[int], failures: list[Failure], max_zero: int
) -> tuple[pa.Table, list[int]]:
    """Decode datums one by one with the strict reader."""
    decoder = SafeDecoder(group.writer.parsed, max_zero)
    schema = group.writer.arrow
    rows: list[dict[str, object]] = []
    done: list[int] = []
    for position in pending:
        try:
            rows.append(decoder.decode(group.datums[position].as_py()))
            done.append(position)
        except DecodeError as exc:
            failures.append(_failure(group, position, exc.kind, exc.message))
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except _ARROW_ERRORS:
        # Some value does not fit its Arrow type (an int beyond int32, a far timestamp...).
        kept_rows, kept = [], []
        for row, position in zip(rows, done, strict=True):
            try:
                pa.Table.from_pylist([row], schema=schema)
            except _ARROW_ERRORS as exc:
                message = f"value does not fit its Arrow type: {exc}"[:500]
                failures.append(_failure(group, position, "corrupt-datum", message))
                continue
            kept_rows.append(row)
            kept.append(position)
        table, done = pa.Table.from_pylist(kept_rows, schema=schema), kept
    return table, done


_ARROW_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError)


def _failure(group: _Group, position: int, kind: str, message: str) -> Failure:
    return Failure(group.indexes[position].as_py(), kind, message, group.writer.schema_id)


def union_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """Fields united by name in first-seen order; a field missing from any schema is nullable."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for f in schema:
            known = fields.get(f.name)
            if known is None:
                fields[f.name] = f
            elif known.type != f.type or known.nullable != f.nullable:
                merged = pa.unify_schemas(
                    [pa.schema([known]), pa.schema([f])], promote_options="permissive"
                )
                fields[f.name] = merged.field(0).with_nullable(known.nullable or f.nullable)
    return pa.schema(
        [
            f.with_nullable(f.nullable or any(f.name not in s.names for s in schemas))
            for f in fields.values()
        ]
    )


def _combine(
    parts: list[tuple[WriterSchema, pa.Table, pa.Int64Array]], failures: list[Failure]
) -> DecodeResult:
    """One table over the writer schemas that gave rows, in batch order."""
    parts = [part for part in parts if part[1].num_rows] or parts[:1]
    schema = union_schema([table.schema for _, table, _ in parts])
    tables: list[pa.Table] = []
    indexes: list[pa.Int64Array] = []
    ids: list[pa.Int32Array] = []
    for writer, table, rows in parts:
        for name in schema.names:
            if name not in table.column_names:
                column = pa.nulls(table.num_rows, schema.field(name).type)
                table = table.append_column(schema.field(name), column)
        table = table.select(schema.names)
        same = table.schema.equals(schema, check_metadata=True)
        tables.append(table if same else table.cast(schema))
        indexes.append(rows)
        ids.append(pa.repeat(pa.scalar(writer.schema_id, pa.int32()), table.num_rows))
    if not tables:
        empty = DecodeResult(
            schema.empty_table(), pa.array([], pa.int64()), pa.array([], pa.int32())
        )
        empty.failures = failures
        return empty
    table = pa.concat_tables(tables)
    row_index = pa.concat_arrays(indexes)
    schema_ids = pa.concat_arrays(ids)
    if not _ascending(row_index):
        order = pc.sort_indices(row_index)
        table, row_index, schema_ids = (
            table.take(order),
            row_index.take(order),
            schema_ids.take(order),
        )
    return DecodeResult(table=table, row_index=row_index, schema_ids=schema_ids, failures=failures)
