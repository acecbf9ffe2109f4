"""Bronze ingestion against the real broker, registry and catalog: the exactly-once oracle
under re-runs, concurrent runs, SIGKILL at each commit point and a registry outage."""

import pytest
from confluent_kafka import Consumer, TopicPartition

from lakehouse.config import BatchLimits
from lakehouse.demo.producer import produce
from lakehouse.errors import RegistryUnavailableError
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.ingest import plan
from lakehouse.kafka.admin import end_offsets
from lakehouse.settings import Settings
from tests.conftest import free_port
from tests.integration.ingest_helpers import (
    assert_exactly_once,
    bronze_frame,
    dead_letter_frame,
    fresh_spec,
    ingest_once,
    run_worker,
    worker_result,
)

pytestmark = pytest.mark.integration


def test_good_events_once_bad_ones_dead_lettered_across_batches(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=700))
    report = produce(
        stack,
        "clicks",
        count=3000,
        topic=spec.topic,
        late_fraction=0.1,
        malformed_fraction=0.05,
        v2_after=1500,
        seed=7,
        progress=False,
        collect_ids=True,
    )
    assert report.ok and sum(report.malformed.values()) > 0 and report.v2 > 0

    first = ingest_once(stack, spec)
    assert first.records_written == report.delivered
    assert first.dead_letters == sum(report.malformed.values())
    assert first.batches >= 4 and first.lag_left == 0
    assert_exactly_once(stack, spec, set(report.ids))

    kinds = dead_letter_frame(stack, spec)["error_kind"].to_list()
    assert {"bad-magic-byte", "unknown-schema-id", "corrupt-datum"} <= set(kinds)
    rows = bronze_frame(stack, spec)
    assert "user_location" in rows.columns  # v2 added an optional column
    assert rows.filter(rows["user_location"].is_not_null()).height > 0

    again = ingest_once(stack, spec)  # the same run twice: nothing new
    assert again.records_written == 0 and again.dead_letters == 0
    assert_exactly_once(stack, spec, set(report.ids))

    # The consumer group's offsets were committed after Iceberg, so Kafka tools see no lag.
    consumer = Consumer(stack.kafka_client_config(**{"group.id": stack.consumer_group}))
    try:
        ends = end_offsets(stack, spec.topic)
        committed = consumer.committed([TopicPartition(spec.topic, p) for p in ends], timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == ends
    finally:
        consumer.close()


def test_replaying_an_explicit_range_never_duplicates(stack: Settings) -> None:
    spec = fresh_spec()
    report = produce(
        stack, "payments", count=600, topic=spec.topic, seed=3, progress=False, collect_ids=True
    )
    ingest_once(stack, spec)
    ends = end_offsets(stack, spec.topic)
    replay = ingest_once(stack, spec, explicit_ranges={p: (0, e) for p, e in ends.items()})
    assert replay.records_written == 0
    assert_exactly_once(stack, spec, set(report.ids))


@pytest.mark.slow
def test_two_overlapping_runs_in_separate_processes(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=300))
    report = produce(
        stack,
        "readings",
        count=4000,
        topic=spec.topic,
        malformed_fraction=0.02,
        seed=11,
        progress=False,
        collect_ids=True,
    )
    workers = [run_worker(spec) for _ in range(2)]
    results = [worker_result(w) for w in workers]
    assert sum(r["records_written"] for r in results) == report.delivered
    assert_exactly_once(stack, spec, set(report.ids))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["before_commit", "after_commit"])
def test_sigkill_at_a_commit_point_then_resume(stack: Settings, kill_at: str) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=400))
    report = produce(
        stack,
        "clicks",
        count=2000,
        topic=spec.topic,
        malformed_fraction=0.03,
        seed=5,
        progress=False,
        collect_ids=True,
    )
    killed = run_worker(spec, kill_at=kill_at)
    killed.communicate(timeout=300)
    assert killed.returncode == -9
    written_before = bronze_frame(stack, spec).height
    assert 0 < written_before < report.delivered
    resumed = ingest_once(stack, spec)
    assert resumed.records_written == report.delivered - written_before
    assert_exactly_once(stack, spec, set(report.ids))


def test_registry_down_fails_clearly_and_commits_nothing(stack: Settings) -> None:
    spec = fresh_spec()
    report = produce(
        stack,
        "clicks",
        count=500,
        topic=spec.topic,
        malformed_fraction=0.02,
        seed=9,
        progress=False,
        collect_ids=True,
    )
    dead_registry = stack.model_copy(
        update={
            "schema_registry_url": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7",
            "schema_registry_timeout_seconds": 1.0,
        }
    )
    with pytest.raises(RegistryUnavailableError):
        ingest_once(dead_registry, spec)  # an outage: every registry call fails
    catalog = load_catalog(stack)
    assert table_or_none(catalog, spec.table) is None
    assert dead_letter_frame(stack, spec).height == 0  # nothing dead-lettered for an outage
    ingest_once(stack, spec)  # registry back
    assert_exactly_once(stack, spec, set(report.ids))
    assert dead_letter_frame(stack, spec).height == sum(report.malformed.values())


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["columnar", "process"])
def test_a_backlog_of_many_batches_keeps_memory_bounded(stack: Settings, reader: str) -> None:
    small = fresh_spec(batch=BatchLimits(max_records=5000))
    large = fresh_spec(batch=BatchLimits(max_records=5000))
    # Two batches: the smallest backlog a reader process is started for.
    produce(stack, "clicks", count=10000, topic=small.topic, seed=1, progress=False, fast=True)
    produce(stack, "clicks", count=60000, topic=large.topic, seed=2, progress=False, fast=True)
    env = {"LAKEHOUSE_KAFKA_READER": reader}
    two = worker_result(run_worker(small, extra_env=env))
    twelve = worker_result(run_worker(large, extra_env=env))
    assert two["kafka_reader"] == twelve["kafka_reader"] == reader
    assert twelve["batches"] >= 12 and twelve["records_written"] == 60000
    # Six times the backlog may not cost six times the memory: it is bounded by the batch.
    assert twelve["peak_mb"] < two["peak_mb"] * 1.5, (two, twelve)
    if reader == "process":
        # The reader process reads one batch ahead at most: bounded the same way.
        assert two["reader_peak_mb"] > 0
        assert twelve["reader_peak_mb"] < two["reader_peak_mb"] * 1.5, (two, twelve)
    else:
        # The columnar reader reads in this process (counted in peak_mb): no child reads.
        assert two["reader_peak_mb"] == twelve["reader_peak_mb"] == 0, (two, twelve)


def test_plan_reads_no_bodies_and_matches_lag(stack: Settings) -> None:
    spec = fresh_spec()
    produce(stack, "readings", count=120, topic=spec.topic, seed=4, progress=False)
    ranges = plan(stack, spec)
    assert sum(r.count for r in ranges) == 120
    ingest_once(stack, spec)
    assert plan(stack, spec) == []


def test_lag_left_counts_what_arrived_while_the_run_read(
    stack: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lakehouse.ingest

    spec = fresh_spec(batch=BatchLimits(max_records=400))
    produce(stack, "clicks", count=1000, topic=spec.topic, seed=31, progress=False)
    real_topic_state = lakehouse.ingest.topic_state
    calls = 0

    def topic_state_after_more_events(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first call plans; the second is asked once reading is done
            produce(stack, "clicks", count=37, topic=spec.topic, seed=32, progress=False)
        return real_topic_state(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lakehouse.ingest, "topic_state", topic_state_after_more_events)
    run = ingest_once(stack, spec)
    assert calls == 2
    assert run.records_written == 1000 and run.lag_left == 37
    monkeypatch.undo()
    assert ingest_once(stack, spec).records_written == 37
