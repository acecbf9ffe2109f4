"""Manifest files read and written with fastavro's C codec instead of pyiceberg's Avro code.

pyiceberg 0.12 decodes a manifest through a reader tree it builds afresh for every file
(~1.5 ms for a 4-entry manifest) and writes one Avro block per entry through Python
encoders (~0.25 ms per entry). Here the records are decoded and encoded by fastavro, with
the parsed schema cached per distinct header schema, and only the conversion between
fastavro's dicts and pyiceberg's `ManifestEntry` / `DataFile` records is Python.

What is read is exactly what pyiceberg's reader returns (same record classes and field
positions, enums, maps as dicts, dates and timestamps as ints, sequence-number and spec-id
inheritance); what is written is a container file with pyiceberg's own header (schema JSON
with field ids, partition spec, format version, codec) and records encoded against that
schema. Schemas with logical types this module does not map the way pyiceberg does (uuid,
decimal, ...) and codecs other than null and deflate go through pyiceberg's code.

A partial read (`read_manifests(..., partial=True)`) decodes an entry alone in its block
only up to `file_size_in_bytes`: the block's end is the entry's, so the metric maps are not
decoded; the data file keeps its bytes to be copied, and `complete` decodes the rest from
them before anything needs it whole.
"""

import io
import json
import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from types import TracebackType
from typing import Any

import fastavro
from pyiceberg.avro.file import AvroOutputFile
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import (
    DEFAULT_READ_VERSION,
    MANIFEST_ENTRY_SCHEMAS,
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestContent,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    ManifestWriter,
    _inherit_from_manifest,
)
from pyiceberg.schema import Schema
from pyiceberg.typedef import Record
from pyiceberg.types import IcebergType, ListType, MapType, StructType
from pyiceberg.utils.schema_conversion import AvroSchemaConversion

from lakehouse.iceberg.maintenance._gc import no_gc
from lakehouse.iceberg.maintenance._local import local_path, read_local

_INT_LOGICAL_TYPES = frozenset({"date", "time-micros", "timestamp-micros", "timestamp-nanos"})
"""Logical types over int/long that pyiceberg keeps as plain ints (stripped for fastavro)."""

_READ_TYPES: dict[int, Callable[..., Record]] = {-1: ManifestEntry, 2: DataFile}
_ENUMS: dict[int, Callable[[Any], Any]] = {
    0: ManifestEntryStatus,
    101: FileFormat,
    134: DataFileContent,
}
_MAGIC = b"Obj\x01"
_BLOCK_RECORDS = 4096
"""Records per Avro block written (pyiceberg writes one block per record)."""

Convert = Callable[[Any], Any]


class Unsupported(Exception):
    """The schema or codec is outside what this module handles: use pyiceberg's code."""


def _plain(schema: Any) -> Any:
    """The Avro schema with the int logical types removed (pyiceberg reads them as ints),
    or `Unsupported` if another logical type (other than Iceberg's map arrays) occurs."""
    if isinstance(schema, list):
        return [_plain(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "logicalType":
            if value in _INT_LOGICAL_TYPES or (value == "map" and schema["type"] == "array"):
                continue
            raise Unsupported(f"logical type {value}")
        out[key] = (
            _plain(value)
            if key in ("type", "items", "values")
            else [{**f, "type": _plain(f["type"])} for f in value]
            if key == "fields"
            else value
        )
    return out


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        if len(rest) != 1:
            raise Unsupported(f"union {avro_type}")
        return rest[0]
    return avro_type


# --- reading -------------------------------------------------------------------------


def _reader_value(avro_type: Any, expected: IcebergType | None, struct_id: int) -> Convert | None:
    """How to turn fastavro's value into pyiceberg's (None: as it is)."""
    avro_type = _non_null(avro_type)
    if not isinstance(avro_type, dict):
        return None
    kind = avro_type["type"]
    if kind == "record":
        return _reader_struct(avro_type, expected, struct_id)
    if kind == "array":
        items = avro_type["items"]
        if avro_type.get("logicalType") == "map":
            fields = {f["name"]: f["type"] for f in items["fields"]}
            expected_map = expected if isinstance(expected, MapType) else None
            key = _reader_value(fields["key"], expected_map and expected_map.key_type, -2)
            value = _reader_value(fields["value"], expected_map and expected_map.value_type, -2)
            if key is None and value is None:
                return _Pairs
            k = key or _identity
            v = value or _identity
            return lambda pairs: {k(p["key"]): v(p["value"]) for p in pairs}
        element = _reader_value(
            items, expected.element_type if isinstance(expected, ListType) else None, -2
        )
        return None if element is None else (lambda values: [element(x) for x in values])
    if kind == "map":
        value = _reader_value(
            avro_type["values"], expected.value_type if isinstance(expected, MapType) else None, -2
        )
        return None if value is None else (lambda m: {k: value(x) for k, x in m.items()})
    return None


def _identity(value: Any) -> Any:
    return value


class _Pairs(Mapping[Any, Any]):
    """A map read as Avro key/value records, made a dict only when looked into (most are
    only copied to the new manifest, which writes the records as they were read)."""

    __slots__ = ("_dict", "raw")

    def __init__(self, raw: list[dict[str, Any]]) -> None:
        self.raw = raw
        self._dict: dict[Any, Any] | None = None

    def _materialized(self) -> dict[Any, Any]:
        if self._dict is None:
            self._dict = {p["key"]: p["value"] for p in self.raw}
        return self._dict

    def __getitem__(self, key: Any) -> Any:
        return self._materialized()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._materialized())

    def __len__(self) -> int:
        return len(self.raw)


def _reader_struct(
    avro_record: dict[str, Any], expected: IcebergType | None, struct_id: int
) -> Convert:
    """A dict → Record converter resolving fields by id as pyiceberg's reader does."""
    create = _READ_TYPES.get(struct_id, Record)
    fields = avro_record["fields"]
    if not isinstance(expected, StructType) or not expected.fields:
        plan = [(f["name"], _reader_value(f["type"], None, -2)) for f in fields]
        return lambda d: create(*[d[n] if c is None else _opt(c, d[n]) for n, c in plan])
    by_id = {f["field-id"]: f for f in fields}
    steps: list[tuple[str | None, Convert | None, Any]] = []
    for read_field in expected.fields:
        found = by_id.get(read_field.field_id)
        if found is None:
            if read_field.initial_default is None and read_field.required:
                raise Unsupported(f"{read_field} missing from the file")
            steps.append((None, None, read_field.initial_default))
            continue
        convert = _reader_value(found["type"], read_field.field_type, read_field.field_id)
        enum = _ENUMS.get(read_field.field_id)
        if enum is not None:
            convert = enum if convert is None else _chain(convert, enum)
        steps.append((found["name"], convert, None))

    def struct(d: dict[str, Any]) -> Record:
        return create(
            *[
                default if name is None else d[name] if c is None else _opt(c, d[name])
                for name, c, default in steps
            ]
        )

    return struct


def _opt(convert: Convert, value: Any) -> Any:
    return None if value is None else convert(value)


def _chain(first: Convert, second: Convert) -> Convert:
    return lambda value: second(first(value))


@lru_cache(maxsize=64)
def _entry_reader(schema_json: str) -> tuple[str, Convert]:
    """The schema without logical types (JSON) and the dict → ManifestEntry converter for
    one header schema."""
    schema = json.loads(schema_json)
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise Unsupported("not a record schema")
    return json.dumps(_plain(schema)), _reader_struct(
        schema, MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION].as_struct(), -1
    )


class _Buffer:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def long(self) -> int:
        data, pos = self.data, self.pos
        byte = data[pos]
        pos += 1
        n = byte & 0x7F
        shift = 7
        while byte & 0x80:
            byte = data[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
        self.pos = pos
        return (n >> 1) ^ -(n & 1)

    def take(self, size: int) -> bytes:
        out = self.data[self.pos : self.pos + size]
        if len(out) != size:
            raise Unsupported("truncated Avro file")
        self.pos += size
        return out


def _long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _header(buf: _Buffer) -> tuple[dict[str, bytes], bytes]:
    if buf.take(4) != _MAGIC:
        raise Unsupported("not an Avro container file")
    meta: dict[str, bytes] = {}
    while count := buf.long():
        if count < 0:
            count = -count
            buf.long()  # block size in bytes
        for _ in range(count):
            key = buf.take(buf.long()).decode()
            meta[key] = buf.take(buf.long())
    return meta, buf.take(16)


_Headers = dict[bytes, dict[str, bytes]]
"""Header bytes (magic and metadata, without the sync marker) → the metadata they hold."""


def _blocks(
    data: bytes, headers: _Headers | None = None
) -> tuple[bytes, bytes, list[tuple[int, bytes]]]:
    """Schema JSON, codec and (record count, block bytes) of an Avro container file.
    `headers` holds headers parsed before: manifests written alike share one, and a file
    that starts with one of them is not parsed again."""
    buf = _Buffer(data)
    for header, known in (headers or {}).items():
        if data.startswith(header):
            buf.pos = len(header)
            meta, sync = known, buf.take(16)
            break
    else:
        meta, sync = _header(buf)
        if headers is not None:
            headers[data[: buf.pos - 16]] = meta
    codec = meta.get("avro.codec", b"null")
    if codec not in (b"null", b"deflate"):
        raise Unsupported(f"codec {codec!r}")
    blocks = []
    while buf.pos < len(data):
        count = buf.long()
        blocks.append((count, buf.take(buf.long())))
        if buf.take(16) != sync:
            raise Unsupported("bad sync marker")
    return meta["avro.schema"], codec, blocks


_V2_PREFIX = ("status", "snapshot_id", "sequence_number", "file_sequence_number", "data_file")
_OPTIONAL_LONG = ["null", "long"]


@lru_cache(maxsize=64)
def _copyable(schema_json: str) -> bool:
    """Whether entries of this schema are a v2 manifest entry whose four leading fields
    are `int` then three `[null, long]`: then the encoded data_file is the record's tail."""
    fields = json.loads(schema_json)["fields"]
    return (
        tuple(f["name"] for f in fields) == _V2_PREFIX
        and fields[0]["type"] == "int"
        and all(f["type"] == _OPTIONAL_LONG for f in fields[1:4])
    )


@lru_cache(maxsize=64)
def _truncated(schema_json: str) -> str | None:
    """The entry schema with data_file's fields after `file_size_in_bytes` left out (the
    metric maps and what follows), for entries whose data_file bytes are copied rather than
    decoded; None when the schema is not a copyable v2 entry of that shape."""
    if not _copyable(schema_json):
        return None
    schema = json.loads(schema_json)
    data_file = schema["fields"][4]
    record = data_file["type"]
    if not isinstance(record, dict) or record.get("type") != "record":
        return None
    names = [f["name"] for f in record["fields"]]
    if "file_size_in_bytes" not in names:
        return None
    cut = names.index("file_size_in_bytes") + 1
    if cut == len(names):
        return None
    short = {**data_file, "type": {**record, "fields": record["fields"][:cut]}}
    short_json = json.dumps({**schema, "fields": [*schema["fields"][:4], short]})
    try:
        _entry_reader(short_json)  # every field pyiceberg requires is before the cut
    except Unsupported:
        return None
    return short_json


def _skip_prefix(record: bytes) -> int:
    """Offset of data_file in an encoded v2 manifest entry (status, then three optional longs)."""
    buf = _Buffer(record)
    buf.long()
    for _ in range(3):
        if buf.long():
            buf.long()
    return buf.pos


class _Encodings:
    """Avro encodings of ints and `[null, long]` values, each computed once (a run's entries
    repeat a few statuses, snapshot ids and sequence numbers)."""

    def __init__(self) -> None:
        self._ints: dict[int, bytes] = {}
        self._optionals: dict[int | None, bytes] = {None: b"\x00"}

    def integer(self, value: int) -> bytes:
        found = self._ints.get(value)
        if found is None:
            found = self._ints[value] = _long(value)
        return found

    def optional(self, value: int | None) -> bytes:
        found = self._optionals.get(value)
        if found is None:
            found = self._optionals[value] = b"\x02" + _long(value)  # type: ignore[arg-type]
        return found

    def prefix(
        self, status: int, snapshot: int | None, seq: int | None, file_seq: int | None
    ) -> bytes:
        """A v2 manifest entry's fields before data_file, encoded."""
        optional = self.optional
        return b"".join(
            (self.integer(status), optional(snapshot), optional(seq), optional(file_seq))
        )


def _decode(
    schema_json: str,
    codec: bytes,
    blocks: list[tuple[int, bytes]],
    encodings: _Encodings,
    partial: bool = False,
) -> list[tuple[Any, bytes | None, bool]]:
    """Records of `blocks` (one schema), each with its encoded data_file when copyable (see
    `_data_file_at`) and whether it was decoded only up to the data file's sizes (`partial`:
    an entry alone in its block, of a schema `_truncated` can cut)."""
    plain, _ = _entry_reader(schema_json)
    parsed = _parsed(plain)
    copyable = _copyable(schema_json)
    short = _truncated(schema_json) if partial else None
    short_parsed = _parsed(_entry_reader(short)[0]) if short is not None else None
    prefix = encodings.prefix
    out: list[tuple[Any, bytes | None, bool]] = []
    record: Any
    for count, block in blocks:
        if codec == b"deflate":
            block = zlib.decompress(block, -15)
        if count == 1 and short_parsed is not None:
            # one entry in the block: its end is the block's, so the metric maps need no
            # decoding to find it
            record = fastavro.schemaless_reader(io.BytesIO(block), short_parsed, None)
            out.append((record, block[_data_file_at(block, 0, len(block), record, prefix) :], True))
            continue
        stream = io.BytesIO(block)
        for _ in range(count):
            start = stream.tell()
            record = fastavro.schemaless_reader(stream, parsed, None)
            if copyable:
                end = stream.tell()
                out.append(
                    (record, block[_data_file_at(block, start, end, record, prefix) : end], False)
                )
            else:
                out.append((record, None, False))
    return out


def _data_file_at(
    block: bytes, start: int, end: int, record: dict[str, Any], prefix: Callable[..., bytes]
) -> int:
    """Where the encoded data_file of the entry `block[start:end]` starts: after its leading
    fields, found by encoding their decoded values again (an encoder writes the shortest
    varints), or by skipping them one by one when the bytes differ."""
    head = prefix(
        record["status"],
        record["snapshot_id"],
        record["sequence_number"],
        record["file_sequence_number"],
    )
    if block.startswith(head, start):
        return start + len(head)
    return start + _skip_prefix(block[start:end])


@lru_cache(maxsize=64)
def _parsed(plain_json: str) -> Any:
    return fastavro.parse_schema(json.loads(plain_json))


def read_manifests(
    fileio: FileIO,
    manifests: list[ManifestFile],
    on_entries: Callable[[list[ManifestEntry]], None] | None = None,
    partial: bool = False,
) -> list[list[ManifestEntry]]:
    """All entries of each manifest (deleted ones included), as
    `manifest.fetch_manifest_entry(io, discard_deleted=False)` returns them; `on_entries` is
    given each manifest's entries as soon as they are decoded. With `partial`, data files of
    data manifests may lack their metric maps and later fields (see `complete`)."""

    def fetch(manifest: ManifestFile) -> bytes:
        with fileio.new_input(manifest.manifest_path).open() as stream:
            return stream.read()

    paths = [local_path(m.manifest_path) for m in manifests]
    if isinstance(fileio, PyArrowFileIO) and all(p is not None for p in paths):
        # local: one read each, without a stream object (a thread per read costs more)
        contents = [
            read_local(p, m.manifest_length)
            for p, m in zip(paths, manifests, strict=True)
            if p is not None
        ]
    else:
        with ThreadPoolExecutor(max_workers=8) as pool:
            contents = list(pool.map(fetch, manifests))
    results: list[list[ManifestEntry] | None] = [None] * len(manifests)
    by_schema: dict[tuple[bytes, bytes], list[tuple[int, list[tuple[int, bytes]]]]] = {}
    headers: _Headers = {}
    encodings = _Encodings()
    for index, data in enumerate(contents):
        try:
            schema_json, codec, blocks = _blocks(data, headers)
            _entry_reader(schema_json.decode())
        except Unsupported:
            fallback = manifests[index].fetch_manifest_entry(fileio, discard_deleted=False)
            results[index] = fallback
            if on_entries is not None:
                on_entries(fallback)
            continue
        by_schema.setdefault((schema_json, codec), []).append((index, blocks))
    with no_gc():
        for (schema_bytes, codec), files in by_schema.items():
            schema_text = schema_bytes.decode()
            _, convert = _entry_reader(schema_text)
            short = _truncated(schema_text) if partial else None
            convert_short = _entry_reader(short)[1] if short is not None else convert
            for index, blocks in files:
                entries = []
                cut_ok = partial and manifests[index].content == ManifestContent.DATA
                for record, raw, cut in _decode(schema_text, codec, blocks, encodings, cut_ok):
                    entry = convert_short(record) if cut else convert(record)
                    if raw is not None:
                        entry.data_file._lakehouse_avro = (schema_text, raw)
                    if cut:
                        entry.data_file._lakehouse_partial = True
                    entries.append(_inherit_from_manifest(entry, manifests[index]))
                results[index] = entries
                if on_entries is not None:
                    on_entries(entries)
    return [r if r is not None else [] for r in results]


def complete(data_file: DataFile) -> None:
    """Fill in what a partial read left out of `data_file` (the metric maps and the fields
    after them) by decoding its own bytes with its manifest's full schema; nothing happens
    to a data file read whole. Call before anything reads those fields or encodes the data
    file from its values rather than copying its bytes."""
    if not getattr(data_file, "_lakehouse_partial", False):
        return
    schema_text, raw = data_file._lakehouse_avro  # type: ignore[attr-defined]
    parsed, convert = _data_file_reader(schema_text)
    whole = convert(fastavro.schemaless_reader(io.BytesIO(raw), parsed, None))
    values = data_file._data
    for position, value in enumerate(whole._data):
        if values[position] is None:
            values[position] = value
    data_file._lakehouse_partial = False


@lru_cache(maxsize=64)
def _data_file_reader(schema_json: str) -> tuple[Any, Convert]:
    """Parsed fastavro schema and dict → DataFile converter for the data_file of one header
    schema (a copyable v2 manifest entry's)."""
    field = json.loads(schema_json)["fields"][4]
    data_file_type = MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION].find_field(field["field-id"])
    return (
        fastavro.parse_schema(_plain(field["type"])),
        _reader_struct(field["type"], data_file_type.field_type, field["field-id"]),
    )


# --- writing -------------------------------------------------------------------------


def _writer_value(iceberg: IcebergType, avro_type: Any, record: IcebergType) -> Convert | None:
    """How to turn pyiceberg's value into what fastavro encodes (None: as it is)."""
    avro_type = _non_null(avro_type)
    if isinstance(iceberg, StructType):
        return _writer_struct(iceberg, avro_type, record)
    if isinstance(iceberg, MapType):
        record_map = record if isinstance(record, MapType) else iceberg
        key = _writer_value(iceberg.key_type, None, record_map.key_type)
        value = _writer_value(iceberg.value_type, None, record_map.value_type)
        if isinstance(avro_type, dict) and avro_type.get("type") == "array":
            if key is None and value is None:
                return _pairs
            k = key or _identity
            v = value or _identity
            return lambda m: [{"key": k(x), "value": v(y)} for x, y in m.items()]
        if value is None:
            return None
        return lambda m: {x: value(y) for x, y in m.items()}
    if isinstance(iceberg, ListType):
        record_list = record if isinstance(record, ListType) else iceberg
        element = _writer_value(iceberg.element_type, None, record_list.element_type)
        return None if element is None else (lambda values: [element(x) for x in values])
    return None


def _writer_struct(file_struct: StructType, avro_record: Any, record: IcebergType) -> Convert:
    positions = (
        {f.field_id: pos for pos, f in enumerate(record.fields)}
        if isinstance(record, StructType) and record.fields
        else {f.field_id: pos for pos, f in enumerate(file_struct.fields)}
    )
    record_types = (
        {f.field_id: f.field_type for f in record.fields} if isinstance(record, StructType) else {}
    )
    avro_fields = (
        {f["field-id"]: f["type"] for f in avro_record["fields"]}
        if isinstance(avro_record, dict) and "fields" in avro_record
        else {}
    )
    steps: list[tuple[str, int | None, Convert | None]] = []
    for field in file_struct.fields:
        pos = positions.get(field.field_id)
        if pos is None and field.required:
            raise Unsupported(f"{field} has no value in the record")
        convert = _writer_value(
            field.field_type,
            avro_fields.get(field.field_id),
            record_types.get(field.field_id, field.field_type),
        )
        if field.field_id in _ENUMS:
            convert = _enum_value
        steps.append((field.name, pos, convert))

    def struct(value: Record) -> dict[str, Any]:
        data = value._data
        out = {}
        for name, pos, convert in steps:
            item = None if pos is None or pos >= len(data) else data[pos]
            out[name] = item if convert is None or item is None else convert(item)
        return out

    return struct


def _pairs(value: Mapping[Any, Any]) -> list[dict[str, Any]]:
    if type(value) is _Pairs:
        return value.raw
    return [{"key": k, "value": v} for k, v in value.items()]


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


_WRITERS: dict[tuple[str, str], tuple[Any, Convert]] = {}


def _entry_writer(
    avro_json: str, file_schema: Schema, record_schema: Schema
) -> tuple[Any, Convert]:
    """Parsed fastavro schema and ManifestEntry → dict converter, cached per schema pair."""
    key = (avro_json, record_schema.model_dump_json())
    found = _WRITERS.get(key)
    if found is None:
        avro = json.loads(avro_json)
        parsed = fastavro.parse_schema(_plain(avro))
        convert = _writer_struct(file_schema.as_struct(), avro, record_schema.as_struct())
        found = _WRITERS[key] = (parsed, convert)
    return found


class FastAvroOutputFile(AvroOutputFile[ManifestEntry]):
    """pyiceberg's `AvroOutputFile` (same header) whose records fastavro encodes, a few
    thousand per block."""

    def __init__(
        self,
        output_file: Any,
        file_schema: Schema,
        schema_name: str,
        record_schema: Schema,
        metadata: dict[str, str],
    ) -> None:
        # no super().__init__: pyiceberg's would build its own (unused) writer tree
        self.output_file = output_file
        self.file_schema = file_schema
        self.schema_name = schema_name
        self.metadata = metadata
        self.sync_bytes = os.urandom(16)
        avro_json = json.dumps(
            AvroSchemaConversion().iceberg_to_avro(file_schema, schema_name=schema_name)
        )
        self._avro_json = avro_json
        self._copyable = _copyable(avro_json)
        self._parsed, self._convert = _entry_writer(avro_json, file_schema, record_schema)
        self._pending: list[bytes] = []
        self._count = 0
        self.written: list[ManifestEntry] = []
        self._encodings = _Encodings()

    def write_block(self, objects: list[ManifestEntry]) -> None:
        self.written.extend(objects)
        pending, avro_json, prefix = self._pending, self._avro_json, self._encodings.prefix
        copyable = self._copyable
        for entry in objects:
            raw = getattr(entry.data_file, "_lakehouse_avro", None)
            if copyable and raw is not None and raw[0] == avro_json:
                # read from a manifest of this very schema: re-encode only the entry's
                # status, snapshot id and sequence numbers, copy the data_file bytes
                status, snapshot_id, sequence_number, file_sequence_number = entry._data[:4]
                pending.append(
                    prefix(int(status), snapshot_id, sequence_number, file_sequence_number)
                )
                pending.append(raw[1])
            else:
                complete(entry.data_file)
                encoded = io.BytesIO()
                fastavro.schemaless_writer(encoded, self._parsed, self._convert(entry))
                pending.append(encoded.getvalue())
            self._count += 1
        if self._count >= _BLOCK_RECORDS:
            self._flush()

    def _flush(self) -> None:
        if not self._count:
            return
        content = b"".join(self._pending)
        if codec := self.compression_codec():
            content, _ = codec.compress(content)
        self.encoder.write_int(self._count)
        self.encoder.write_int(len(content))
        self.encoder.write(content)
        self.encoder.write(self.sync_bytes)
        self._pending = []
        self._count = 0

    def __exit__(
        self,
        exctype: type[BaseException] | None,
        excinst: BaseException | None,
        exctb: TracebackType | None,
    ) -> None:
        if exctype is None:
            self._flush()
        super().__exit__(exctype, excinst, exctb)


_FAST_WRITERS: dict[type, type] = {}


def fast_manifest_writer(writer: ManifestWriter) -> ManifestWriter:
    """`writer` (from pyiceberg's `write_manifest`) encoding its records with fastavro, when
    its schema allows; pyiceberg's writer as it is otherwise."""
    schema = writer._with_partition(writer.version)
    avro_json = json.dumps(
        AvroSchemaConversion().iceberg_to_avro(schema, schema_name="manifest_entry")
    )
    try:
        _entry_writer(avro_json, schema, writer._with_partition(DEFAULT_READ_VERSION))
    except Unsupported:
        return writer
    cls = type(writer)
    fast = _FAST_WRITERS.get(cls)
    if fast is None:
        fast = _FAST_WRITERS[cls] = type(f"Fast{cls.__name__}", (cls,), {"new_writer": _new_writer})
    writer.__class__ = fast
    return writer


_ENTRY_FIELDS = ("status", "snapshot_id", "sequence_number", "file_sequence_number", "data_file")
_POSITIONAL = (
    tuple(f.name for f in MANIFEST_ENTRY_SCHEMAS[DEFAULT_READ_VERSION].fields) == _ENTRY_FIELDS
)
"""Whether `ManifestEntry(*values)` in `_ENTRY_FIELDS` order is what `from_args` builds."""


def copy_entries(writer: ManifestWriter, entries: list[ManifestEntry], deleted: set[str]) -> None:
    """`writer.delete(e)` for each live entry whose file is in `deleted`, `writer.existing(e)`
    for the other live ones (entries DELETED earlier are skipped): the same entries, counts,
    partitions, minimum sequence number and `prepare_entry` checks as pyiceberg's
    `ManifestWriter.add_entry` gives, in one pass and one `write_block` call rather than a
    `from_args` and a block call per entry (~15 µs each)."""
    if not isinstance(getattr(writer, "_writer", None), FastAvroOutputFile):
        for entry in entries:  # pyiceberg's writer encodes every entry from its values
            complete(entry.data_file)
    if not _POSITIONAL:
        for entry in entries:
            if entry.status == ManifestEntryStatus.DELETED:
                continue
            if entry.data_file.file_path in deleted:
                writer.delete(entry)
            else:
                writer.existing(entry)
        return
    if writer.closed:
        raise RuntimeError("Cannot add entry to closed manifest writer")
    snapshot_id = writer._snapshot_id
    prepare = writer.prepare_entry
    partitions = writer._partitions
    existing_status, deleted_status = ManifestEntryStatus.EXISTING, ManifestEntryStatus.DELETED
    out = []
    for entry in entries:
        status, entry_snapshot_id, sequence_number, file_sequence_number, data_file = entry._data
        if status == deleted_status:
            continue
        if data_file.file_path in deleted:
            copy = ManifestEntry(
                deleted_status, snapshot_id, sequence_number, file_sequence_number, data_file
            )
            writer._deleted_files += 1
            writer._deleted_rows += data_file.record_count
        else:
            copy = ManifestEntry(
                existing_status, entry_snapshot_id, sequence_number, file_sequence_number, data_file
            )
            writer._existing_files += 1
            writer._existing_rows += data_file.record_count
            if sequence_number is not None and (
                writer._min_sequence_number is None or sequence_number < writer._min_sequence_number
            ):
                writer._min_sequence_number = sequence_number
        partitions.append(data_file.partition)
        out.append(prepare(copy))
    if out:
        writer._writer.write_block(out)


def written_entries(writer: ManifestWriter) -> list[ManifestEntry] | None:
    """The entries a closed fast writer wrote, as given to it (None for pyiceberg's writer)."""
    output = getattr(writer, "_writer", None)
    return output.written if isinstance(output, FastAvroOutputFile) else None


def _new_writer(self: ManifestWriter) -> AvroOutputFile[ManifestEntry]:
    return FastAvroOutputFile(
        output_file=self._output_file,
        file_schema=self._with_partition(self.version),
        schema_name="manifest_entry",
        record_schema=self._with_partition(DEFAULT_READ_VERSION),
        metadata=self._meta,
    )
