"""Proof that the fast path read each datum exactly, computed on the decoded Arrow columns.

`polars.read_avro` ignores bytes left over in a block and reads any non-null union index
(-1, 2, ...) as the non-null branch. Both would silently accept datums the Avro spec
rejects. So, vectorised over a whole group: the canonical (shortest) encoding size of each
decoded row must equal its datum's length, and every union index byte must be 0x00 or 0x02
as its value is null or not. A canonical encoding is the shortest one for those values, so
size equality also proves every part (varint, block, length) was canonical, which puts each
union index byte at a computable offset. Rows failing the proof go to the safe path, which
decides: non-canonical but valid encodings are accepted there, the rest are dead-lettered.
Likewise polars wraps int/long varints beyond their range; the last byte of every
full-length varint is checked for that.
"""

import functools
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.avro.schema import Schema, decimal_params, logical_type, nullable_branch

_FIXED_SIZES = {"boolean": 1, "float": 4, "double": 8, "null": 0}
_I64 = pa.int64()


def datum_bytes(datums: pa.LargeBinaryArray | Sequence[bytes]) -> bytes | pa.Buffer:
    """The datums back to back, without copying when they are an Arrow array."""
    if not isinstance(datums, pa.Array):
        return b"".join(datums)
    if len(datums) == 0 or datums.buffers()[2] is None:
        return b""
    offsets = pa.Array.from_buffers(
        _I64, len(datums) + 1, [None, datums.buffers()[1]], offset=datums.offset
    )
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    return datums.buffers()[2].slice(first, last - first)  # type: ignore[no-any-return]


def exact_rows(
    table: pa.Table, schema: Schema, datums: pa.LargeBinaryArray | Sequence[bytes]
) -> pa.BooleanArray:
    """Mask: row i of `table` (as polars returned it) is proven to be exactly `datums[i]`."""
    if not isinstance(datums, pa.Array):
        datums = pa.array(datums, pa.large_binary())
    lengths = pc.cast(pc.binary_length(datums), _I64)
    starts = pc.subtract(pc.cumulative_sum(lengths), lengths)
    joined = pa.py_buffer(datum_bytes(datums))
    walker = _Walker(pa.Array.from_buffers(pa.uint8(), joined.size, [None, joined]))
    ok = None
    offset = starts
    for field in schema.fields:  # type: ignore[attr-defined]
        column = table.column(field.name).combine_chunks()
        sizes, good = walker.walk(column, field.type, offset)
        offset = pc.add(offset, sizes)
        ok = _both(ok, good)
    return _both(ok, pc.equal(pc.subtract(offset, starts), lengths))  # type: ignore[return-value]


def varint_sizes(values: pa.Array) -> pa.Array:
    """Bytes of the zig-zag varint encoding of each integer (nulls count as 0)."""
    v = pc.cast(values, _I64)
    if v.null_count:
        v = pc.fill_null(v, 0)
    low, high = (x.as_py() or 0 for x in pc.min_max(v).values())
    # zigzag(v) < 2**(7k)  <=>  m < 2**(7k-1), with m = v for v >= 0 and ~v for v < 0
    if low >= 0:
        m, largest = v, high
    else:
        m, largest = pc.if_else(pc.less(v, 0), pc.bit_wise_not(v), v), max(high, ~low)
    size = _full(len(v), 1)
    for k in range(1, 10):
        threshold = 1 << (7 * k - 1)
        if largest < threshold:
            break
        size = pc.add(size, pc.cast(pc.greater_equal(m, threshold), _I64))
    return size


@functools.lru_cache(maxsize=8)
def _full(n: int, value: int) -> pa.Array:
    """n times `value` (cached: a few are needed again and again for one group)."""
    return pa.repeat(pa.scalar(value, _I64), n)


def _both(a: pa.Array | None, b: pa.Array | None) -> pa.Array | None:
    """Element-wise and of two checks; None is a check every element passed."""
    if a is None:
        return b
    return a if b is None else pc.and_(a, b)


class _Walker:
    """Computes canonical sizes and checks union bytes for arrays at given byte offsets."""

    def __init__(self, buffer: pa.Array) -> None:
        self.buffer = buffer

    def byte_at(self, positions: pa.Array) -> pa.Array:
        if len(self.buffer) == 0:
            return pa.array([255] * len(positions), pa.uint8())
        clipped = pc.min_element_wise(pc.max_element_wise(positions, 0), len(self.buffer) - 1)
        return pc.take(self.buffer, clipped)

    def walk(
        self, array: pa.Array, schema: Schema, starts: pa.Array
    ) -> tuple[pa.Array, pa.Array | None]:
        """(size of each element, element passed the checks), elements starting at `starts`;
        None for checks when the type has none (every element passes)."""
        n = len(array)
        kind = schema.type
        ok = None
        if kind == "union":
            inner, null_index = nullable_branch(schema)  # type: ignore[misc]
            valid = array.is_valid()
            expected = pc.if_else(valid, 2 * (1 - null_index), 2 * null_index)
            ok = pc.equal(pc.cast(self.byte_at(starts), _I64), pc.cast(expected, _I64))
            sizes, inner_ok = self.walk(array, inner, pc.add(starts, 1))
            sizes = pc.if_else(valid, pc.add(sizes, 1), 1)
            return sizes, ok if inner_ok is None else pc.and_(
                ok, pc.or_(inner_ok, pc.invert(valid))
            )
        if kind in _FIXED_SIZES:
            return _full(n, _FIXED_SIZES[kind]), ok
        if kind == "fixed":
            return _full(n, schema.size), ok  # type: ignore[attr-defined]
        decimal = decimal_params(schema)
        if decimal is not None and kind == "bytes":
            # Empty bytes read as 0 yet are shorter than 0's canonical b"\x00", which would
            # let a trailing byte pass the size proof: such rows go to the safe path.
            not_empty = pc.not_equal(pc.cast(self.byte_at(starts), _I64), 0)
            return _decimal_sizes(array, decimal[1]), not_empty
        if kind in ("int", "long"):
            # polars wraps varints beyond the type's range (2**32 + 2**30 reads as 2**30 in an
            # int): the last byte of a full-length varint must hold no bits beyond 32 or 64.
            sizes = varint_sizes(_raw_integers(array, logical_type(schema)))
            width, top = (5, 0x0F) if kind == "int" else (10, 0x01)
            last = pc.cast(self.byte_at(pc.add(starts, width - 1)), _I64)
            return sizes, pc.or_(pc.less(sizes, width), pc.less_equal(last, top))
        if kind in ("string", "bytes"):
            lengths = pc.cast(pc.binary_length(array), _I64)
            if lengths.null_count:
                lengths = pc.fill_null(lengths, 0)
            return pc.add(varint_sizes(lengths), lengths), ok
        if kind == "enum":
            return varint_sizes(_enum_indexes(array, schema.symbols)), ok  # type: ignore[attr-defined]
        if kind in ("record", "error"):
            sizes = _full(n, 0)
            for i, field in enumerate(schema.fields):  # type: ignore[attr-defined]
                child_sizes, child_ok = self.walk(array.field(i), field.type, pc.add(starts, sizes))
                sizes = pc.add(sizes, child_sizes)
                ok = _both(ok, child_ok)
            return sizes, ok
        if kind == "array":
            return self._walk_list(array, schema.items, starts)  # type: ignore[attr-defined]
        raise TypeError(f"the fast path does not read {kind}")

    def _walk_list(
        self, array: pa.Array, items: Schema, starts: pa.Array
    ) -> tuple[pa.Array, pa.Array | None]:
        offsets = pc.cast(array.offsets, _I64)
        first = offsets[0].as_py()
        local = pc.subtract(offsets, first)
        counts = pc.subtract(local[1:], local[:-1])
        values = array.values.slice(first, offsets[-1].as_py() - first)
        header = varint_sizes(counts)
        nonempty = pc.greater(counts, 0)
        if len(values) == 0:
            return _full(len(array), 1), None
        # Item sizes do not depend on where the items start: measure first, then place.
        item_sizes, _ = self.walk(values, items, _full(len(values), 0))
        ends = pa.concat_arrays([_full(1, 0), pc.cumulative_sum(item_sizes)])
        owner = pc.list_parent_indices(array.slice(0, len(array)))
        before_list = pc.take(ends, local[:-1])
        item_starts = pc.add(
            pc.take(pc.add(starts, header), owner),
            pc.subtract(ends[:-1], pc.take(before_list, owner)),
        )
        _, item_ok = self.walk(values, items, item_starts)
        ok = None
        if item_ok is not None:
            bad_owners = pc.filter(owner, pc.invert(item_ok))
            ok = pc.invert(
                pc.is_in(pa.array(range(len(array)), _I64), value_set=pc.cast(bad_owners, _I64))
            )
        totals = pc.subtract(pc.take(ends, local[1:]), before_list)
        sizes = pc.if_else(nonempty, pc.add(pc.add(header, totals), 1), 1)
        return sizes, ok


def _raw_integers(array: pa.Array, logical: str | None) -> pa.Array:
    """The integers as written: polars turns time-millis/micros into nanoseconds."""
    if pa.types.is_time(array.type):
        nanos = pc.cast(pc.cast(array, pa.time64("ns")), _I64)
        divisor = 1_000_000 if logical == "time-millis" else 1_000
        return pc.divide(nanos, divisor)
    if pa.types.is_date32(array.type):  # Arrow casts date32 to int32 only, not to int64
        return pc.cast(pc.cast(array, pa.int32()), _I64)
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        return pc.cast(array, _I64)
    return array


def _enum_indexes(array: pa.Array, symbols: Sequence[str]) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return pc.index_in(array, value_set=pa.array(list(symbols), array.type))


def _decimal_sizes(array: pa.Array, scale: int) -> pa.Array:
    sizes = []
    for value in array.to_pylist():
        if not isinstance(value, Decimal):
            sizes.append(1)
            continue
        unscaled = int(value.scaleb(scale))
        bits = unscaled.bit_length() if unscaled >= 0 else (~unscaled).bit_length()
        length = bits // 8 + 1
        sizes.append(length + len(zigzag(length)))
    return pa.array(sizes, _I64)


def zigzag(value: int) -> bytes:
    """The Avro zig-zag varint encoding of a long."""
    number = (value << 1) ^ (value >> 63)
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
