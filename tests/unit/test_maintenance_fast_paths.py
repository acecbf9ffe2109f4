"""The fast paths under compaction give what pyiceberg's own code gives: manifest entries
read with fastavro, manifests written with it, data files written by `DataFileWriter`."""

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io.pyarrow import pyarrow_to_schema, schema_to_pyarrow, write_file
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.partitioning import PartitionField
from pyiceberg.table import Table, WriteTask
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    TruncateTransform,
)
from pyiceberg.typedef import Record
from pyiceberg.types import LongType, StringType, TimestampType, TimestamptzType

from lakehouse.iceberg.data_file_writer import DataFileWriter
from lakehouse.iceberg.maintenance import _avro, compact
from lakehouse.iceberg.maintenance._rewrite import _MIXED, _FieldCheck, _KnownPartition
from lakehouse.iceberg.parquet_dictionary import dictionary_columns
from tests.unit.test_maintenance import SCHEMA, flat_rows, flat_table, ingest, rows, table_rows


def _deep(value: Any) -> Any:
    """A record tree as plain values, with class names (enums, Record subclasses) kept."""
    if isinstance(value, Record):
        return (type(value).__name__, [_deep(v) for v in value._data])
    if isinstance(value, Mapping):
        return {k: _deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep(v) for v in value]
    return (type(value).__name__, value)


@pytest.fixture()
def catalog(tmp_path: Path) -> SqlCatalog:
    cat = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/wh")
    cat.create_namespace("bronze")
    return cat


def _table(catalog: SqlCatalog, name: str, fields: list[tuple[str, Any, str]]) -> Table:
    table = catalog.create_table(f"bronze.{name}", schema=SCHEMA)
    with table.update_spec() as spec:
        for source, transform, partition_name in fields:
            spec.add_field(source, transform, partition_name)
    return ingest(table, batches=4, size=30)


PARTITIONINGS = {
    "day-and-identity": [("ts", DayTransform(), "ts_day"), ("kind", IdentityTransform(), "k")],
    "date-bucket-truncate": [
        ("day", IdentityTransform(), "d"),
        ("id", BucketTransform(4), "id_bucket"),
        ("event_uuid", TruncateTransform(3), "u3"),
    ],
    # decimal partition values: fastavro's logical type, so pyiceberg's reader is used
    "decimal-fallback": [("amount", IdentityTransform(), "amount")],
    "unpartitioned": [],
}


@pytest.mark.parametrize("partitioning", PARTITIONINGS)
def test_read_manifests_equals_pyiceberg(catalog: SqlCatalog, partitioning: str) -> None:
    table = _table(catalog, partitioning.replace("-", "_"), PARTITIONINGS[partitioning])
    manifests = table.current_snapshot().manifests(table.io)

    fast = _avro.read_manifests(table.io, manifests)

    for manifest, entries in zip(manifests, fast, strict=True):
        expected = manifest.fetch_manifest_entry(table.io, discard_deleted=False)
        assert [_deep(e) for e in entries] == [_deep(e) for e in expected]
        assert [e.data_file.spec_id for e in entries] == [e.data_file.spec_id for e in expected]


def test_data_file_bytes_found_after_a_longer_than_needed_varint(catalog: SqlCatalog) -> None:
    """The encoded data_file of a read entry starts where its leading fields, encoded again
    from their values, end; an entry written with a longer varint than needed (valid Avro)
    has its fields skipped one by one instead."""
    import zlib

    table = _table(catalog, "varints", PARTITIONINGS["day-and-identity"])
    manifest = table.current_snapshot().manifests(table.io)[0]
    with table.io.new_input(manifest.manifest_path).open() as stream:
        schema_json, codec, blocks = _avro._blocks(stream.read())
    schema = schema_json.decode()
    count, block = blocks[0]
    plain = zlib.decompress(block, -15) if codec == b"deflate" else block
    assert plain[0] == 0x02  # status ADDED (1), zigzag-encoded in one byte
    longer = b"\x82\x00" + plain[1:]  # the same value in two bytes

    expected = _avro._decode(schema, b"null", [(count, plain)], _avro._Encodings())
    found = _avro._decode(schema, b"null", [(count, longer)], _avro._Encodings())

    assert found == expected
    assert all(raw for _, raw, _ in found)


@pytest.mark.parametrize("partitioning", PARTITIONINGS)
def test_compaction_manifests_read_back_by_pyiceberg(
    catalog: SqlCatalog, partitioning: str
) -> None:
    """Entries the fastavro writer wrote (copied data_file bytes, or encoded) read back with
    pyiceberg's reader exactly as the entries they came from."""
    table = _table(catalog, partitioning.replace("-", "_"), PARTITIONINGS[partitioning])
    before = {
        e.data_file.file_path: e
        for m in table.current_snapshot().manifests(table.io)
        for e in m.fetch_manifest_entry(table.io)
    }
    expected_rows = table_rows(table)

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    fresh = SqlCatalog(catalog.name, **catalog.properties).load_table(table.name())  # new reader
    assert table_rows(fresh).equals(expected_rows)
    snapshot = fresh.metadata.snapshot_by_id(report.snapshot_id)
    deleted = [
        e
        for m in snapshot.manifests(fresh.io)
        for e in m.fetch_manifest_entry(fresh.io, discard_deleted=False)
        if e.status == ManifestEntryStatus.DELETED
    ]
    assert len(deleted) == report.files_rewritten > 0
    for entry in deleted:
        old = before[entry.data_file.file_path]
        assert _deep(entry.data_file) == _deep(old.data_file)
        assert entry.snapshot_id == report.snapshot_id
        assert (entry.sequence_number, entry.file_sequence_number) == (
            old.sequence_number,
            old.file_sequence_number,
        )
    live = [
        e
        for m in fresh.current_snapshot().manifests(fresh.io)
        for e in m.fetch_manifest_entry(fresh.io, discard_deleted=False)
    ]
    assert {e.status for e in live} == {ManifestEntryStatus.EXISTING}
    assert len(live) == report.files_after == len(before) - len(deleted) + report.files_written


def test_data_file_writer_equals_write_file(catalog: SqlCatalog) -> None:
    table = _table(catalog, "writer", PARTITIONINGS["day-and-identity"])
    metadata = table.metadata
    data = rows(0, 50)  # neither writer checks that rows belong to the partition given
    partition = next(
        e.data_file.partition
        for m in table.current_snapshot().manifests(table.io)
        for e in m.fetch_manifest_entry(table.io)
    )
    key = _KnownPartition(
        field_values=[], partition_spec=metadata.spec(), schema=metadata.schema(), record=partition
    )
    writer = DataFileWriter(table.io, metadata)
    writer.prepare(data.schema)

    ours = writer.write(data, key)
    theirs = next(
        write_file(
            table.io,
            metadata,
            iter(
                [
                    WriteTask(
                        write_uuid=uuid.uuid4(),
                        task_id=0,
                        schema=pyarrow_to_schema(
                            data.schema,
                            name_mapping=metadata.schema().name_mapping,
                            format_version=metadata.format_version,
                        ),
                        record_batches=data.to_batches(),
                        partition_key=key,
                    )
                ]
            ),
        )
    )

    mine, other = _deep(ours), _deep(theirs)
    path_index = 1
    assert mine[1][:path_index] + mine[1][path_index + 1 :] == (
        other[1][:path_index] + other[1][path_index + 1 :]
    )
    assert ours.file_path.rsplit("/", 1)[0] == theirs.file_path.rsplit("/", 1)[0]
    ours_schema = pq.read_schema(ours.file_path.removeprefix("file://"))
    theirs_schema = pq.read_schema(theirs.file_path.removeprefix("file://"))
    assert ours_schema.equals(theirs_schema, check_metadata=True)
    assert pq.read_table(ours.file_path.removeprefix("file://")).equals(
        pq.read_table(theirs.file_path.removeprefix("file://"))
    )


def _parquet(data_file: Any) -> pq.ParquetFile:
    return pq.ParquetFile(data_file.file_path.removeprefix("file://"))


SAME_FIELDS = (
    "content",
    "file_format",
    "partition",
    "record_count",
    "value_counts",
    "null_value_counts",
    "nan_value_counts",
    "lower_bounds",
    "upper_bounds",
    "key_metadata",
    "equality_ids",
    "sort_order_id",
)
"""`DataFile` fields a change of encoding leaves alone (not the path, the file and column
sizes, nor the row groups' offsets)."""


def test_data_file_writer_dictionary_where_it_pays(catalog: SqlCatalog) -> None:
    """Compaction's writer: the same rows, Arrow schema (field ids), partition and column
    statistics as pyiceberg's `write_file` (the default writer, checked equal to it above);
    only the encodings differ: a dictionary only where it is smaller than the values."""
    table = flat_table(catalog, [("ts", DayTransform(), "ts_day")], batches=1, rows=10)
    metadata = table.metadata
    data = flat_rows(0, 3000)  # neither writer checks that rows belong to the partition given
    [manifest] = table.current_snapshot().manifests(table.io)
    partition = manifest.fetch_manifest_entry(table.io)[0].data_file.partition
    key = _KnownPartition(
        field_values=[], partition_spec=metadata.spec(), schema=metadata.schema(), record=partition
    )
    default = DataFileWriter(table.io, metadata)
    pays = DataFileWriter(table.io, metadata, dictionary_where_it_pays=True)
    for writer in (default, pays):
        writer.prepare(data.schema)

    theirs, ours = default.write(data, key), pays.write(data, key)

    for name in SAME_FIELDS:
        assert _deep(getattr(ours, name)) == _deep(getattr(theirs, name)), name
    assert set(ours.column_sizes) == set(theirs.column_sizes)
    assert len(ours.split_offsets or []) == len(theirs.split_offsets or [])
    assert _parquet(ours).schema_arrow.equals(_parquet(theirs).schema_arrow, check_metadata=True)
    assert _parquet(ours).read().equals(_parquet(theirs).read())
    assert ours.file_size_in_bytes < theirs.file_size_in_bytes

    chunks = _parquet(ours).metadata.row_group(0)
    dictionary = {
        chunks.column(i).path_in_schema
        for i in range(chunks.num_columns)
        if chunks.column(i).dictionary_page_offset is not None
    }
    assert dictionary == {"kind"}  # 3 values; the others are unique or boolean


def test_dictionary_columns() -> None:
    few = pa.array(["a", "b", None] * 500)
    unique = pa.array([f"value-{i}" for i in range(1500)])
    table = pa.table(
        {
            "few": few,
            "unique": unique,
            "ints": pa.array(range(1500), pa.int64()),
            "nulls": pa.nulls(1500, pa.string()),
            "flag": pa.array([True, False] * 750),
        }
    )
    assert dictionary_columns(table) == ["few"]
    assert dictionary_columns(table.slice(0, 0)) == []
    nested = table.append_column("tags", pa.array([["x"]] * 1500))
    assert dictionary_columns(nested) is True


@pytest.mark.parametrize("flat", [True, False], ids=["polars-read", "arrowscan-read"])
def test_files_of_an_older_spec_are_repartitioned(catalog: SqlCatalog, flat: bool) -> None:
    """Groups of the previous (unpartitioned) spec are written partitioned under the current
    spec (pyiceberg's `_dataframe_to_data_files`); current-spec groups by `DataFileWriter`."""
    from tests.unit.test_maintenance import FLAT, flat_rows

    table = catalog.create_table("bronze.respec", schema=FLAT if flat else SCHEMA)
    make = flat_rows if flat else rows
    for b in range(3):
        table.append(make(b * 40, 40))
    with table.update_spec() as spec:
        spec.add_field("kind", IdentityTransform(), "kind")
    for b in range(3, 6):
        table.append(make(b * 40, 40))
    expected = table_rows(table)

    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)

    fresh = SqlCatalog(catalog.name, **catalog.properties).load_table("bronze.respec")
    assert table_rows(fresh).equals(expected)
    assert report.rows_rewritten == expected.num_rows
    current = fresh.spec().spec_id
    files = [t.file for t in fresh.scan().plan_files()]
    assert {f.spec_id for f in files} == {current}
    # a group is one (spec, partition): the old spec's rows land beside the new spec's files
    again = compact(fresh, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)
    fresh = SqlCatalog(catalog.name, **catalog.properties).load_table("bronze.respec")
    assert table_rows(fresh).equals(expected)
    files = [t.file for t in fresh.scan().plan_files()]
    assert again.files_written == len(files) == len({tuple(f.partition._data) for f in files})


def test_copy_entries_writes_what_delete_and_existing_write(catalog: SqlCatalog) -> None:
    """`copy_entries` (one pass, one block call) gives the manifest that `ManifestWriter.delete`
    and `.existing` give entry by entry: same entries, counts, minimum sequence number and
    partition summaries; entries DELETED earlier are dropped."""
    from pyiceberg.manifest import write_manifest

    table = _table(catalog, "copies", PARTITIONINGS["day-and-identity"])
    report = compact(table, target_file_size_bytes=1 << 20, min_manifests_to_merge=2)
    ingest(table, batches=2, size=30, first_id=1_000)
    snapshots = (table.metadata.snapshot_by_id(report.snapshot_id), table.current_snapshot())
    manifests = {m.manifest_path: m for s in snapshots for m in s.manifests(table.io)}
    entries = [e for es in _avro.read_manifests(table.io, list(manifests.values())) for e in es]
    assert {e.status for e in entries} == set(ManifestEntryStatus)
    live = [e for e in entries if e.status != ManifestEntryStatus.DELETED]
    deleted = {e.data_file.file_path for e in live[::2]}
    written = []
    for bulk in (False, True):
        path = f"{table.location()}/metadata/copy-{uuid.uuid4()}.avro"
        writer = _avro.fast_manifest_writer(
            write_manifest(
                2, table.spec(), table.schema(), table.io.new_output(path), 42, "deflate"
            )
        )
        with writer:
            if bulk:
                _avro.copy_entries(writer, entries, deleted)
            else:
                for entry in live:
                    if entry.data_file.file_path in deleted:
                        writer.delete(entry)
                    else:
                        writer.existing(entry)
        written.append(writer.to_manifest_file())
    one_by_one, bulk_ = written
    assert _deep(one_by_one)[1][2:] == _deep(bulk_)[1][2:]  # all but the path and length
    assert [_deep(e) for e in one_by_one.fetch_manifest_entry(table.io, False)] == [
        _deep(e) for e in bulk_.fetch_manifest_entry(table.io, False)
    ]
    marked = sum(e.data_file.file_path in deleted for e in live)
    assert one_by_one.deleted_files_count == marked > 0
    assert one_by_one.existing_files_count == len(live) - marked > 0


@pytest.mark.parametrize("partitioning", ["day-and-identity", "date-bucket-truncate"])
def test_a_partial_read_leaves_out_only_the_metrics_and_complete_restores_them(
    catalog: SqlCatalog, partitioning: str
) -> None:
    """Entries alone in their Avro block (pyiceberg writes one per block) are read without
    their metric maps when asked (`partial`), with the same data_file bytes to copy;
    `complete` decodes the rest from those bytes: then they equal a whole read."""
    table = _table(catalog, partitioning.replace("-", "_"), PARTITIONINGS[partitioning])
    manifests = table.current_snapshot().manifests(table.io)

    whole = [e for es in _avro.read_manifests(table.io, manifests) for e in es]
    partial = [e for es in _avro.read_manifests(table.io, manifests, partial=True) for e in es]

    assert len(partial) == len(whole) > 0
    for cut, full in zip(partial, whole, strict=True):
        assert cut.data_file._lakehouse_partial
        assert cut.data_file._lakehouse_avro == full.data_file._lakehouse_avro
        assert _deep(cut.data_file._data[:6]) == _deep(full.data_file._data[:6])
        assert cut.data_file.value_counts is None and full.data_file.value_counts
        assert (cut.status, cut.snapshot_id, cut.sequence_number, cut.data_file.spec_id) == (
            full.status,
            full.snapshot_id,
            full.sequence_number,
            full.data_file.spec_id,
        )
        _avro.complete(cut.data_file)
        assert _deep(cut) == _deep(full)
        assert not cut.data_file._lakehouse_partial


def test_only_a_v2_entry_schema_with_data_file_sizes_is_cut(catalog: SqlCatalog) -> None:
    table = _table(catalog, "cuts", PARTITIONINGS["day-and-identity"])
    manifest = table.current_snapshot().manifests(table.io)[0]
    with table.io.new_input(manifest.manifest_path).open() as stream:
        schema_json = _avro._blocks(stream.read())[0].decode()

    short = _avro._truncated(schema_json)

    assert short is not None
    data_file = json.loads(short)["fields"][4]["type"]
    assert [f["name"] for f in data_file["fields"]][-2:] == ["record_count", "file_size_in_bytes"]
    entry = json.loads(schema_json)
    without_sizes = {**entry, "fields": entry["fields"][:4]}  # no data_file at all
    assert _avro._truncated(json.dumps(without_sizes)) is None
    v1_like = {**entry, "fields": [entry["fields"][0], entry["fields"][1], entry["fields"][4]]}
    assert _avro._truncated(json.dumps(v1_like)) is None
    record = entry["fields"][4]["type"]
    sizeless = {
        **record,
        "fields": [f for f in record["fields"] if f["name"] != "file_size_in_bytes"],
    }
    no_size = {**entry, "fields": [*entry["fields"][:4], {**entry["fields"][4], "type": sizeless}]}
    assert _avro._truncated(json.dumps(no_size)) is None


def test_partial_entries_written_from_their_values_keep_their_metrics(
    catalog: SqlCatalog,
) -> None:
    """A partial entry that cannot be copied (its bytes are of another schema) and one given
    to pyiceberg's own writer are completed before they are encoded: the manifests read
    back with every metric."""
    from pyiceberg.manifest import write_manifest

    table = _table(catalog, "partial_writes", PARTITIONINGS["day-and-identity"])
    manifests = table.current_snapshot().manifests(table.io)
    expected = {
        e.data_file.file_path: _deep(e.data_file)
        for es in _avro.read_manifests(table.io, manifests)
        for e in es
    }
    for fast in (True, False):
        entries = [e for es in _avro.read_manifests(table.io, manifests, partial=True) for e in es]
        for entry in entries:  # bytes of "another schema": they cannot be copied
            schema_text, raw = entry.data_file._lakehouse_avro
            entry.data_file._lakehouse_avro = (schema_text + " ", raw)
        path = f"{table.location()}/metadata/partial-{uuid.uuid4()}.avro"
        writer = write_manifest(
            2, table.spec(), table.schema(), table.io.new_output(path), 42, "deflate"
        )
        if fast:
            writer = _avro.fast_manifest_writer(writer)
        with writer:
            _avro.copy_entries(writer, entries, set())
        read_back = writer.to_manifest_file().fetch_manifest_entry(table.io)
        assert len(read_back) == len(expected)
        for entry in read_back:
            assert _deep(entry.data_file) == expected[entry.data_file.file_path], fast
            assert entry.data_file.value_counts


@pytest.mark.parametrize(
    ("transform", "source_type", "values", "expected"),
    [
        (DayTransform(), TimestamptzType(), [0, 3_600_000_000, 86_399_999_999], 0),
        (DayTransform(), TimestamptzType(), [0, 86_400_000_000], "mixed"),  # two days
        (IdentityTransform(), StringType(), ["b", "b"], "b"),
        (IdentityTransform(), StringType(), ["a", "b", "a"], "mixed"),
        (IdentityTransform(), StringType(), [None, None], None),
        (IdentityTransform(), StringType(), ["a", None], "mixed"),  # nulls are a partition too
        (HourTransform(), TimestampType(), [7_200_000_000, 7_300_000_000], 2),
        (BucketTransform(4), LongType(), [1, 1], "bucket"),  # not order-preserving: every row
    ],
)
def test_partition_value_of_a_column_from_its_bounds(
    transform: Any, source_type: Any, values: list, expected: Any
) -> None:
    """Order-preserving transforms decide from the column's min and max; a column whose
    rows fall into two partitions (or mix nulls and values) is reported mixed."""
    field = PartitionField(source_id=1, field_id=1000, transform=transform, name="p")
    check = _FieldCheck.of(field, "c", source_type)
    assert check.by_bounds == (not isinstance(transform, BucketTransform))
    column = pa.chunked_array(
        [
            pa.array(values[:1], schema_to_pyarrow(source_type)),
            pa.array(values[1:], schema_to_pyarrow(source_type)),
        ]
    )
    found = check.value(column)
    if expected == "mixed":
        assert found is _MIXED
    elif expected == "bucket":
        assert found == transform.transform(source_type)(1)
    else:
        assert found == expected
