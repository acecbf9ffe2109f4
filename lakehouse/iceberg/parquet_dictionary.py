"""Which columns of a Parquet file to dictionary-encode: those where it pays.

pyarrow dictionary-encodes every column unless told otherwise, falling back to plain only
when the dictionary outgrows `write.parquet.dict-size-bytes`. A column of unique values
(ids, offsets, event times) under that limit is then written as a dictionary as large as
the values plus an index per row: bigger and slower to write than plain. Java Iceberg's
Parquet writer (parquet-mr) falls back to plain when, after the first page, the dictionary
plus the encoded indexes are not smaller than the plain values
(`DictionaryValuesWriter.isCompressionSatisfying`). This applies that rule to a sample of
each column: the dictionary is kept where the sample says it is smaller.
"""

import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_ROWS = 1024
"""Values per column the decision looks at (the first ones)."""


def dictionary_columns(table: pa.Table, sample_rows: int = SAMPLE_ROWS) -> list[str] | bool:
    """Names of the columns to dictionary-encode (pyarrow's `use_dictionary`), or True
    (every column, pyarrow's default) when a column is nested (the decision is per leaf
    column, and only flat columns are looked at)."""
    if any(pa.types.is_nested(field.type) for field in table.schema):
        return True
    sample = table.slice(0, sample_rows)
    return [
        field.name
        for field, column in zip(table.schema, sample.columns, strict=True)
        if _dictionary_pays(column)
    ]


def _dictionary_pays(column: pa.ChunkedArray) -> bool:
    """Whether dictionary + bit-packed indexes are smaller than the plain values."""
    if pa.types.is_boolean(column.type):
        return False  # pyarrow writes no dictionary for booleans anyway
    values = column.drop_null()
    count = len(values)
    if count == 0:
        return False  # only nulls: a dictionary of nothing is not smaller
    distinct = pc.unique(values)
    index_bytes = count * max(1, (len(distinct) - 1).bit_length()) / 8
    try:
        return _plain_bytes(distinct) + index_bytes < _plain_bytes(values)
    except ValueError:  # a type without a fixed width that is not binary: pyarrow decides
        return True


def _plain_bytes(values: pa.Array | pa.ChunkedArray) -> int:
    """Size of the values in Parquet's plain encoding (4-byte length before each binary)."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if (
        pa.types.is_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary_view(kind)
        or pa.types.is_string_view(kind)
    ):
        total = pc.sum(pc.binary_length(values)).as_py() or 0
        return int(total) + 4 * len(values)
    return len(values) * kind.byte_width  # fixed-width: ints, floats, dates, timestamps, ...
