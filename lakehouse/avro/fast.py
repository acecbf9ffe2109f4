"""The fast path: a group's datums wrapped in an in-memory Avro container file for polars.

Each datum gets its own block (count 1, byte size = its length), so a malformed datum can
only make its own block fail or leave bytes in it; it can never shift a neighbour.
`canonical.exact_rows` then proves which rows were read exactly.
"""

import io
import os
from collections.abc import Sequence

import polars as pl
import pyarrow as pa
from polars.exceptions import PanicException

from lakehouse.avro.canonical import exact_rows
from lakehouse.avro.writer_schema import WriterSchema

_MAGIC = b"Obj\x01"


class FastPathError(Exception):
    """polars could not read the group (some datum in it is bad or unsupported)."""


def zigzag(value: int) -> bytes:
    """The Avro zig-zag varint encoding of a long."""
    number = (value << 1) ^ (value >> 63)
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def container(schema_text: str, datums: Sequence[bytes]) -> bytes:
    """An Avro object container file (codec null) holding each datum in its own block."""
    sync = os.urandom(16)
    parts = [_MAGIC, zigzag(2)]
    for key, value in ((b"avro.schema", schema_text.encode()), (b"avro.codec", b"null")):
        parts += [zigzag(len(key)), key, zigzag(len(value)), value]
    parts += [zigzag(0), sync]
    one = zigzag(1)
    for datum in datums:
        parts += [one, zigzag(len(datum)), datum, sync]
    return b"".join(parts)


def read_fast(writer: WriterSchema, datums: Sequence[bytes]) -> tuple[pa.Table, pa.Array]:
    """(decoded table in the writer's Arrow schema, mask of rows proven exact).

    Raises `FastPathError` for any failure, including polars panics.
    """
    try:
        frame = pl.read_avro(io.BytesIO(container(writer.text, datums)))
        raw = frame.to_arrow()
        if raw.num_rows != len(datums):
            raise FastPathError(f"polars read {raw.num_rows} rows of {len(datums)}")
        exact = exact_rows(raw, writer.parsed, datums)
        table = raw.select(writer.arrow.names).cast(writer.arrow)
        table.validate(full=True)
    except FastPathError:
        raise
    except (Exception, PanicException) as exc:  # polars panics are BaseExceptions
        raise FastPathError(f"{type(exc).__name__}: {exc}"[:500]) from exc
    return table, pa.array(exact)
