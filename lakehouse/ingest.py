"""One ingestion run of a stream: plan the range, read it in bounded batches, decode, commit.

Each batch is one Iceberg commit that carries the Kafka offsets (DESIGN §2), so any re-run,
overlapping run or retry after a crash neither loses nor duplicates an event.
"""

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, TopicPartition

from lakehouse import huge_pages
from lakehouse.avro.decode import DecodeResult, Failure, decode_values
from lakehouse.avro.registry import RegistrySchemaSource, SchemaSource
from lakehouse.config import StreamSpec
from lakehouse.errors import OffsetGapError, StreamPausedError
from lakehouse.iceberg.catalog import ensure_table, load_catalog, table_or_none
from lakehouse.iceberg.commit import (
    StagedFiles,
    commit_batch,
    committed_offsets,
    committed_topic_id,
    stage_files,
    topic_id_key,
)
from lakehouse.iceberg.dead_letters import commit_dead_letters, dead_letter_rows
from lakehouse.kafka.admin import TopicState, topic_id, topic_state
from lakehouse.kafka.columnar import ColumnarConsumer
from lakehouse.kafka.columnar import unavailable_reason as columnar_unavailable
from lakehouse.kafka.metadata_columns import with_kafka_columns
from lakehouse.kafka.offsets import PartitionRange, plan_ranges, total_lag
from lakehouse.kafka.reader import KafkaReadError, RawBatch, consumer_config, read_batches
from lakehouse.kafka.reader_process import ReaderProcess
from lakehouse.pipeline import Background
from lakehouse.schema.pause import (
    blocking,
    clear_pause,
    paused_reason,
    read_pause,
    record_pause,
)
from lakehouse.schema.policy import (
    cut_before,
    first_incompatible,
    incompatible,
    route_to_version_tables,
)
from lakehouse.schema.projection import conform_rows
from lakehouse.schema.subject import create_from_subject
from lakehouse.schema.target import BronzeTarget, VersionLookup, registry_versions
from lakehouse.settings import Settings

T = TypeVar("T")


@dataclass
class IngestReport:
    """What one run did; `as_metadata()` is what the Dagster asset publishes."""

    stream: str
    topic: str
    table: str
    records_written: int = 0
    dead_letters: int = 0
    duplicates_skipped: int = 0
    bytes_read: int = 0
    batches: int = 0
    files_added: int = 0
    snapshot_ids: list[int] = field(default_factory=list)
    offset_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    lag_left: int = 0
    version_tables: dict[str, int] = field(default_factory=dict)  # new_table: table → rows

    @property
    def records_to_version_tables(self) -> int:
        """Rows written to `<table>__v<N>` tables (policy new_table)."""
        return sum(self.version_tables.values())

    max_event_time: datetime | None = None
    seconds: float = 0.0
    kafka_reader: str = ""  # how Kafka was read: columnar, process or thread

    @property
    def records_per_second(self) -> float:
        """Records written and dead-lettered per second of the run."""
        handled = self.records_written + self.dead_letters
        return handled / self.seconds if self.seconds > 0 else 0.0

    def as_metadata(self) -> dict[str, Any]:
        """Numbers for plots, plus the offset ranges and snapshot as text."""
        return {
            "records_written": self.records_written,
            "dead_letters": self.dead_letters,
            "duplicates_skipped": self.duplicates_skipped,
            "bytes_read": self.bytes_read,
            "batches": self.batches,
            "files_added": self.files_added,
            "lag_left": self.lag_left,
            "records_to_version_tables": self.records_to_version_tables,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_per_second, 1),
            "max_event_time": self.max_event_time.isoformat() if self.max_event_time else "",
            "kafka_reader": self.kafka_reader,
            "snapshot_id": str(self.snapshot_ids[-1]) if self.snapshot_ids else "",
            "offset_ranges": {
                str(p): f"{start}..{end}" for p, (start, end) in sorted(self.offset_ranges.items())
            },
        }


def plan(settings: Settings, spec: StreamSpec, catalog: Any | None = None) -> list[PartitionRange]:
    """The ranges a run started now would ingest (no message bodies are read)."""
    return _plan(settings, spec, catalog).ranges


@dataclass(frozen=True)
class StreamState:
    """What a sensor needs: the ranges a run would ingest, and why the stream is paused."""

    ranges: list[PartitionRange]
    paused: str | None  # None: not paused (or resolved since: the next run resumes it)


def stream_state(settings: Settings, spec: StreamSpec) -> StreamState:
    """The stream's lag ranges and pause state (no message bodies are read)."""
    planned = _plan(settings, spec, None)
    return StreamState(planned.ranges, paused_reason(settings, spec, planned.table))


@dataclass(frozen=True)
class _Planned:
    ranges: list[PartitionRange]
    topic_id: str
    catalog: Any
    table: Any  # the bronze table as loaded while planning, None if it does not exist yet

    @property
    def table_exists(self) -> bool:
        return self.table is not None


def _in_background(function: Callable[..., T], *args: Any) -> "Future[T]":
    """`function(*args)` started on a thread of its own; its future."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakehouse-setup")
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends once the call is done


def _plan(settings: Settings, spec: StreamSpec, catalog: Any | None) -> _Planned:
    """The ranges, the topic's Kafka id, the catalog and whether the table exists: Kafka is
    asked while the catalog and the table load."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        asked = pool.submit(topic_state, settings, spec.topic)
        catalog = catalog if catalog is not None else load_catalog(settings)
        table = table_or_none(catalog, spec.table)
        state = asked.result()
    committed = committed_offsets(table, spec.topic) if table is not None else {}
    if table is not None:
        _refuse_recreated_topic(spec, table, state.topic_id)
    ranges = plan_ranges(spec.topic, committed, state.earliest, state.end)
    return _Planned(ranges, state.topic_id, catalog, table)


def _refuse_recreated_topic(spec: StreamSpec, table: Any, current: str) -> None:
    """The table's offsets belong to one incarnation of the topic; a new one must not reuse them."""
    recorded = committed_topic_id(table, spec.topic)
    if recorded is not None and current != recorded:
        raise OffsetGapError(
            f"{spec.topic}: the topic was deleted and recreated (Kafka topic id {current}, but "
            f"{spec.table} holds offsets of topic id {recorded}). Its offsets would point into "
            "the wrong messages; refusing to continue. Reset the table's offsets deliberately."
        )


@dataclass
class _Run:
    """What every batch of one run needs."""

    settings: Settings
    catalog: Any
    schemas: SchemaSource
    spec: StreamSpec
    run_id: str
    dead_letter_table: str
    topic_id: str
    report: IngestReport
    target: BronzeTarget
    versions: VersionLookup
    table_exists: bool = False  # known once: not loaded again for every batch
    latest: Any = None  # the table as the run's last commit left it (reloaded when stale)


def ingest(
    settings: Settings,
    spec: StreamSpec,
    *,
    run_id: str,
    dead_letter_table: str,
    explicit_ranges: Mapping[int, tuple[int, int]] | None = None,
    catalog: Any | None = None,
    schemas: SchemaSource | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> IngestReport:
    """Ingest `spec.topic` from the table's committed offsets to the end offsets seen now.

    `explicit_ranges` ({partition: (start, end)}) replays a given range instead; offsets
    already in the table are skipped, so a replay never duplicates. Transparent huge pages
    are off while it runs (`lakehouse.huge_pages`).
    """
    with huge_pages.disabled():
        return _ingest(
            settings,
            spec,
            run_id=run_id,
            dead_letter_table=dead_letter_table,
            explicit_ranges=explicit_ranges,
            catalog=catalog,
            schemas=schemas,
            log=log,
        )


def _ingest(
    settings: Settings,
    spec: StreamSpec,
    *,
    run_id: str,
    dead_letter_table: str,
    explicit_ranges: Mapping[int, tuple[int, int]] | None,
    catalog: Any | None,
    schemas: SchemaSource | None,
    log: Callable[[str], None],
) -> IngestReport:
    started = time.monotonic()
    config = consumer_config(settings)
    reading = reader_kind(settings)
    # The columnar consumer connects while the run plans; it reads everything.
    columnar = ColumnarConsumer(config) if reading == "columnar" else None
    # With reader processes this consumer reads one batch, or a backlog's first quarter
    # batches: a shallow prefetch, or librdkafka fetches (and throws away) what a child reads.
    # Otherwise it only commits the consumer group's offsets (and reads, on a thread).
    shallow = {"queued.min.messages": max(1_000, spec.batch.max_records // 8)}
    consumer = Consumer({**config, **shallow} if reading == "process" else config)
    # While planning, the consumers connect and the registry client (~30 ms) is made.
    warm_up = _in_background(consumer.list_topics, spec.topic, 10)  # errors surface later
    prepared = _in_background(columnar.prepare, spec.topic) if columnar is not None else None
    reader: ReaderProcess | None = None
    try:
        registry = _in_background(RegistrySchemaSource, settings) if schemas is None else None
        table = None
        if explicit_ranges is not None:
            catalog = catalog if catalog is not None else load_catalog(settings)
            ranges = [
                PartitionRange(p, s, e) for p, (s, e) in sorted(explicit_ranges.items()) if e > s
            ]
            kafka_topic_id, table_exists = topic_id(settings, spec.topic), False
        else:
            planned = _plan(settings, spec, catalog)
            ranges, kafka_topic_id, catalog = planned.ranges, planned.topic_id, planned.catalog
            table, table_exists = planned.table, planned.table_exists
        versions = registry_versions(settings, spec.subject)
        if table is not None and (pause := read_pause(table)) is not None:
            # Paused: go on only if the table, the policy or the registry was fixed.
            schemas = schemas if schemas is not None else registry.result()  # type: ignore[union-attr]
            if (reason := blocking(pause, spec, table, schemas, versions)) is not None:
                raise StreamPausedError(reason)
            clear_pause(catalog, spec.table)
            table = None  # changed: the target loads it again
        log(f"{spec.topic}: {total_lag(ranges)} offsets to ingest in {len(ranges)} partitions")
        if reading == "process" and total_lag(ranges) > spec.batch.max_records:
            # A backlog: a child reads most of it; it starts while this process reads the
            # first batches. One batch is read here: sooner than starting a child.
            reader = ReaderProcess(config, spec.topic)
        failed = threading.Event()  # set by the first stage that fails: reading stops
        if prepared is not None:
            prepared.result()  # the columnar consumer is used by one thread at a time
        batches = _batches(spec, columnar or consumer, reader, ranges, failed.is_set)
        if registry is not None:
            schemas = registry.result()
        assert schemas is not None  # given, or made in the background
        report = IngestReport(
            stream=spec.name, topic=spec.topic, table=spec.table, kafka_reader=reading
        )
        applied_by = f"run {run_id}"
        target = BronzeTarget(
            catalog,
            spec,
            versions=versions,
            applied_by=applied_by,
            table=table,
            create=lambda _writer: create_from_subject(
                settings, catalog, spec, created_by=applied_by
            ),
        )
        run = _Run(
            settings,
            catalog,
            schemas,
            spec,
            run_id,
            dead_letter_table,
            kafka_topic_id,
            report,
            target,
            versions,
            table_exists=table_exists,  # from planning: no second load to find out
        )
        # Kafka's end offsets are asked once reading is done, while the last batches commit.
        ends: list[Future[TopicState]] = []

        def ask_ends() -> None:
            ends.append(_in_background(topic_state, settings, spec.topic))

        _run_stages(run, consumer, _then(batches, ask_ends), failed, log)
    finally:
        for call in (warm_up, prepared):
            with contextlib.suppress(Exception):
                if call is not None:
                    call.result()  # never close a consumer under a call still running
        consumer.close()
        if reader is not None:
            reader.close()
        if columnar is not None:
            columnar.close()
    if explicit_ranges is None:
        report.lag_left = _lag_left(run, ends[0].result() if ends else None)
    report.seconds = time.monotonic() - started
    return report


def _then(batches: Iterator[RawBatch], action: Callable[[], object]) -> Iterator[RawBatch]:
    """The batches, then `action()` once they are all read."""
    yield from batches
    action()


def _lag_left(run: _Run, state: TopicState | None) -> int:
    """Offsets left after the run: Kafka's end offsets (asked as reading ended, if given)
    less the offsets the run's last commit left in the table."""
    if state is None or run.latest is None:
        return total_lag(plan(run.settings, run.spec, run.catalog))
    committed = committed_offsets(run.latest, run.spec.topic)
    return total_lag(plan_ranges(run.spec.topic, committed, state.earliest, state.end))


@dataclass
class _Batch:
    """One batch on its way through the stages: read, decoded, written, committed."""

    raw: RawBatch
    decoded: DecodeResult
    rows: pa.Table
    ingested_at: datetime
    staged: StagedFiles | None = None


def _run_stages(
    run: _Run,
    consumer: Consumer,
    batches: Iterator[RawBatch],
    failed: threading.Event,
    log: Callable[[str], None],
) -> None:
    """Read; decode; write the data files; commit: one thread each, batches in order.

    While batch N commits, N+1's files are written, N+2 is decoded and N+3 read (by the
    reader process, if any). The commit, the only step that must run one batch at a time,
    holds no Parquet encoding (lakehouse/pipeline.py). The first failure sets `failed`
    (which stops `batches`) and is raised here.
    """
    spec = run.spec
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="lakehouse-table") as bootstrap,
        Background("lakehouse-commit", failed) as committer,
        Background("lakehouse-write", failed) as writer,
        Background("lakehouse-decode", failed) as decoder,
    ):
        # A first run creates its table while the first batch is read.
        table_ready = None if run.table_exists else bootstrap.submit(_table_from_registry, run)

        def decode(raw: RawBatch) -> None:
            ingested_at = datetime.now(UTC)
            decoded = decode_values(raw.values, run.schemas, target=run.target)
            rows = with_kafka_columns(decoded.table, raw, decoded.row_index, ingested_at)
            writer.submit(write, _Batch(raw, decoded, rows, ingested_at))

        def write(batch: _Batch) -> None:
            if not run.table_exists and table_ready is not None:
                run.table_exists = table_ready.result()
            if not run.table_exists and batch.rows.num_rows:
                ensure_table(run.catalog, spec.table, batch.rows.schema, spec.partition_by)
                run.table_exists = True
            batch.staged = stage_files(run.catalog, spec.table, batch.rows, run.latest)
            committer.submit(_commit_batch, run, consumer, batch, log)

        for raw in batches:
            decoder.submit(decode, raw)
        decoder.wait()
        writer.wait()
        committer.wait()


def reader_kind(settings: Settings) -> str:
    """'columnar', 'process' or 'thread': how this run reads Kafka (`Settings.kafka_reader`)."""
    if settings.kafka_reader == "auto":
        return "columnar" if columnar_unavailable() is None else "process"
    if settings.kafka_reader == "columnar" and (reason := columnar_unavailable()) is not None:
        raise KafkaReadError(f"LAKEHOUSE_KAFKA_READER=columnar, but {reason}")
    return settings.kafka_reader


def _batches(
    spec: StreamSpec,
    consumer: Consumer | ColumnarConsumer,
    reader: ReaderProcess | None,
    ranges: list[PartitionRange],
    stop: Callable[[], bool],
) -> Iterator[RawBatch]:
    """The run's batches, read by `consumer` and, if there is one, by the reader process as
    soon as it is ready.

    A backlog of more than one batch starts and ends with quarter batches, so the stages after
    reading start sooner and finish sooner; with a reader process this process reads the first
    ones itself while the child starts (a few tenths of a second).
    """
    most, max_bytes = spec.batch.max_records, spec.batch.max_bytes
    if not any(r.count for r in ranges):
        return iter(())
    first = most // 4 if total_lag(ranges) > most else None
    if isinstance(consumer, ColumnarConsumer):
        return consumer.read_batches(
            spec.topic,
            ranges,
            max_records=most,
            max_bytes=max_bytes,
            edge_max_records=first,
            stop=stop,
        )
    if reader is None:
        return read_batches(
            consumer,
            spec.topic,
            ranges,
            max_records=most,
            max_bytes=max_bytes,
            edge_max_records=first,
            stop=stop,
        )
    return _head_then_reader(spec, consumer, reader, ranges, stop)


def _head_then_reader(
    spec: StreamSpec,
    consumer: Consumer,
    reader: ReaderProcess,
    ranges: list[PartitionRange],
    stop: Callable[[], bool],
) -> Iterator[RawBatch]:
    """Quarter batches read here until the reader process is ready, then the rest from it."""
    most, max_bytes = spec.batch.max_records, spec.batch.max_bytes
    position = {r.partition: r.start for r in ranges}
    head = read_batches(
        consumer,
        spec.topic,
        ranges,
        max_records=max(1, most // 4),
        max_bytes=max_bytes,
        stop=stop,
        cut=reader.ready,  # the child is ready: the batch in hand is the last one read here
    )
    try:
        for batch in head:
            position.update(batch.next_offsets)
            yield batch
            if reader.ready():
                break
    finally:
        head.close()  # stops fetching here
    rest = [PartitionRange(r.partition, position[r.partition], r.end) for r in ranges]
    if any(r.count for r in rest) and not stop():
        yield from reader.batches(
            rest,
            max_records=most,
            max_bytes=max_bytes,
            edge_max_records=max(1, most // 4),  # a quarter first (it starts cold) and last
            stop=stop,
        )


def _commit_batch(run: _Run, consumer: Consumer, batch: _Batch, log: Callable[[str], None]) -> None:
    """Commit one batch (dead letters, rows with offsets), then the consumer group."""
    _ingest_batch(run, batch)
    consumer.commit(
        offsets=[TopicPartition(run.spec.topic, p, o) for p, o in batch.raw.next_offsets.items()],
        asynchronous=False,
    )
    log(
        f"batch {run.report.batches}: {len(batch.raw)} messages, "
        f"{run.report.records_written} rows and {run.report.dead_letters} dead letters so far"
    )


def _ingest_batch(run: _Run, batch: _Batch) -> None:
    raw, decoded, rows, ingested_at = batch.raw, batch.decoded, batch.rows, batch.ingested_at
    failures, next_offsets, staged = decoded.failures, raw.next_offsets, batch.staged
    policy = run.spec.schema_policy.on_incompatible
    stops = first_incompatible(raw, failures) if policy == "pause" else {}
    if stops:  # commit what comes before the first refused message, then stop
        refused = incompatible(failures)[0]
        cut = cut_before(raw, rows, failures, stops)
        rows, failures, next_offsets, staged = cut.rows, cut.failures, cut.next_offsets, None
    elif policy == "new_table" and incompatible(failures):
        routed = route_to_version_tables(
            run.catalog,
            run.spec,
            raw,
            failures,
            run.schemas,
            run.versions,
            ingested_at,
            {"lakehouse.run-id": run.run_id},
        )
        failures = routed.failures
        for outcome in routed.outcomes:
            tables = run.report.version_tables
            tables[outcome.table] = tables.get(outcome.table, 0) + outcome.rows_written
    if failures:
        _commit_dead_letters(run, raw, failures, next_offsets, ingested_at)
    if not run.table_exists and table_or_none(run.catalog, run.spec.table) is None:
        if rows.num_rows:
            ensure_table(run.catalog, run.spec.table, rows.schema, run.spec.partition_by)
        elif not _table_from_registry(run):
            return  # nothing to create the table from yet; the dead letters are safe already
    run.table_exists = True
    outcome = commit_batch(
        run.catalog,
        run.spec.table,
        run.spec.topic,
        rows,
        raw.start_offsets,
        next_offsets,
        snapshot_properties={"lakehouse.run-id": run.run_id},
        table_properties={topic_id_key(run.spec.topic): run.topic_id},
        staged=staged,
        table=run.latest,
        conform=functools.partial(_conform, schema_id=decoded.target_version),
    )
    run.latest = outcome.latest
    report = run.report
    report.batches += 1
    report.records_written += outcome.rows_written
    report.duplicates_skipped += outcome.rows_skipped
    report.bytes_read += raw.nbytes
    report.files_added += outcome.data_files_added
    if outcome.snapshot_id is not None:
        report.snapshot_ids.append(outcome.snapshot_id)
    for p, start in raw.start_offsets.items():
        first = report.offset_ranges.get(p, (start, start))[0]
        report.offset_ranges[p] = (first, next_offsets.get(p, start))
    if rows.num_rows and run.spec.event_time in rows.column_names:
        latest = pc.max(rows[run.spec.event_time]).as_py()
        if latest is not None and (report.max_event_time is None or latest > report.max_event_time):
            report.max_event_time = latest
    if stops:
        _pause(run, refused, stops)


def _conform(table: Any, rows: pa.Table, schema_id: int | None) -> pa.Table:
    return conform_rows(rows, table, schema_id)


def _pause(run: _Run, refused: Failure, stops: dict[int, int]) -> None:
    """Record why the stream stops (on the table) and stop the run with that message."""
    schema_id = refused.schema_id if refused.schema_id is not None else -1
    pause = record_pause(
        run.catalog, run.spec.table, schema_id, run.versions(schema_id), stops, refused.message
    )
    raise StreamPausedError(pause.message(run.spec))


def _commit_dead_letters(
    run: _Run,
    raw: RawBatch,
    failures: list[Failure],
    next_offsets: dict[int, int],
    ingested_at: datetime,
) -> None:
    """Dead letters first: a crash before the rows commit re-reads the batch, and this table
    trims what it already holds."""
    dead = dead_letter_rows(raw, failures, run.run_id, ingested_at)
    outcome = commit_dead_letters(
        run.catalog,
        run.dead_letter_table,
        run.spec.topic,
        dead,
        raw.start_offsets,
        next_offsets,
    )
    run.report.dead_letters += outcome.rows_written


def _table_from_registry(run: _Run) -> bool:
    """True once the table exists: made from the subject's versions if it is missing (False
    when none is registered: the first rows will make it). A first batch of only dead letters
    can then still commit its offsets."""
    made = create_from_subject(run.settings, run.catalog, run.spec, created_by=f"run {run.run_id}")
    return made is not None
