"""Faults around a running ingestion: the broker bounced mid-run (on a private stack), a
zombie writer resuming after another committed its range, a topic deleted and recreated,
and batches of nothing but dead letters. After each, the exactly-once oracle holds."""

import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from pyiceberg.serializers import FromInputFile

from lakehouse.audit import check_offset_chain
from lakehouse.config import BatchLimits, StreamSpec
from lakehouse.demo.malformed import DEAD_LETTER_KIND, MalformedKind
from lakehouse.demo.producer import produce
from lakehouse.errors import OffsetGapError
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.iceberg.commit import committed_offsets, offsets_key
from lakehouse.ingest import plan
from lakehouse.kafka.admin import end_offsets, list_topics
from lakehouse.settings import Settings
from lakehouse.stack import LocalStack, StackOptions
from lakehouse.stack.processes import stop
from tests.conftest import stack_env
from tests.integration.ingest_helpers import (
    DEAD_LETTERS,
    ROOT,
    assert_exactly_once,
    bronze_frame,
    dead_letter_frame,
    fresh_spec,
    ingest_once,
    run_worker,
)

pytestmark = pytest.mark.integration


def offsets_history(table: Any, topic: str) -> list[dict[int, int]]:
    """The committed offsets in every metadata version still in the log, oldest first."""
    files = [entry.metadata_file for entry in table.metadata.metadata_log]
    history = []
    for path in [*files, table.metadata_location]:
        metadata = FromInputFile.table_metadata(table.io.new_input(path))
        raw = metadata.properties.get(offsets_key(topic))
        history.append({int(p): o for p, o in json.loads(raw).items()} if raw else {})
    return history


def assert_offsets_never_go_back(table: Any, topic: str) -> None:
    history = offsets_history(table, topic)
    assert len(history) >= 2
    for before, after in itertools.pairwise(history):
        for partition, offset in before.items():
            assert after.get(partition, -1) >= offset, (partition, before, after)
    chain = check_offset_chain(table, topic)
    assert chain.ok, chain.problems


# -- broker stopped and restarted mid-run ----------------------------------------------------


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    """A second stack of our own (own home, ports, catalog), so the shared one is untouched."""
    env = stack_env(tmp_path / "home")
    settings = Settings(
        home=tmp_path / "home",
        kafka_bootstrap_servers=env["LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=env["LAKEHOUSE_SCHEMA_REGISTRY_URL"],
    )
    options = StackOptions(kafka_controller_port=int(env["LAKEHOUSE_KAFKA_CONTROLLER_PORT"]))
    local = LocalStack(settings, options)
    try:
        local.up()
        yield local, env
    finally:
        local.down()


@pytest.mark.slow
def test_broker_stopped_and_restarted_while_a_worker_ingests(
    private_stack: tuple[LocalStack, dict[str, str]],
) -> None:
    local, env = private_stack
    settings = local.settings
    spec = fresh_spec("readings", batch=BatchLimits(max_records=200))
    report = produce(
        settings,
        "readings",
        count=12_000,
        topic=spec.topic,
        malformed_fraction=0.01,
        seed=61,
        progress=False,
        collect_ids=True,
        fast=True,
    )
    assert report.ok
    worker = run_worker(spec, extra_env=env)
    catalog = load_catalog(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker.poll() is None:
        table = table_or_none(catalog, spec.table)
        if table is not None and sum(committed_offsets(table, spec.topic).values()) > 0:
            break
        time.sleep(0.1)
    assert worker.poll() is None, "the worker finished before the broker could be stopped"
    stopped_at = sum(committed_offsets(catalog.load_table(spec.table), spec.topic).values())

    stop(local.kafka_files.pid, timeout=30)  # the broker only; the registry stays up
    time.sleep(8)  # longer than the reader's idle timeout (5 s)
    assert local.up().answering  # restarts the broker on its data
    try:
        out, err = worker.communicate(timeout=180)  # it must end, one way or the other
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.communicate()
        pytest.fail("the worker hung after the broker came back")
    if worker.returncode != 0:
        # A clear failure: a named exception about Kafka, not a hang or a crash.
        last = err.decode().strip().splitlines()[-1]
        assert worker.returncode == 1, err.decode()[-3000:]
        assert any(word in last for word in ("Kafka", "kafka", "broker", "topic")), last
    table = catalog.load_table(spec.table)
    assert sum(committed_offsets(table, spec.topic).values()) >= stopped_at

    for _ in range(3):  # re-run until nothing is left
        rerun = ingest_once(settings, spec)
        if rerun.lag_left == 0:
            break
    assert rerun.lag_left == 0
    assert_exactly_once(settings, spec, set(report.ids))
    assert_offsets_never_go_back(load_catalog(settings).load_table(spec.table), spec.topic)
    print(f"worker exit {worker.returncode}: {(out or err).decode().strip().splitlines()[-1]}")


# -- zombie writer ---------------------------------------------------------------------------

ZOMBIE = r"""
import json, os, sys, time, uuid
from pyiceberg.table import Transaction
from pyiceberg.table.update import SetPropertiesUpdate
from lakehouse import ingest as ingest_module
from lakehouse.config import StreamSpec
from lakehouse.iceberg.commit import offsets_key
from lakehouse.settings import Settings

spec = StreamSpec.model_validate_json(os.environ["LAKEHOUSE_TEST_SPEC"])
where = os.environ["ZOMBIE_PAUSE"]  # before_commit_batch | before_catalog_swap
paused, resume = os.environ["ZOMBIE_PAUSED_FILE"], os.environ["ZOMBIE_RESUME_FILE"]
state = {"paused": False}
outcomes = []

def pause():
    if state["paused"]:
        return
    state["paused"] = True
    open(paused, "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(resume):
        assert time.monotonic() < deadline, "never resumed"
        time.sleep(0.05)

real_commit_batch = ingest_module.commit_batch

def commit_batch(catalog, identifier, *args, **kwargs):
    if identifier == spec.table and where == "before_commit_batch":
        pause()
    outcome = real_commit_batch(catalog, identifier, *args, **kwargs)
    if identifier == spec.table:
        outcomes.append({"rows_written": outcome.rows_written, "conflicts": outcome.conflicts,
                         "snapshot_id": outcome.snapshot_id, "attempts": outcome.attempts})
    return outcome

real_swap = Transaction.commit_transaction

def commit_transaction(self):
    # The offsets and rows are staged on the table as it was loaded: a stale writer.
    ours = any(isinstance(u, SetPropertiesUpdate) and offsets_key(spec.topic) in u.updates
               for u in self._updates)
    if ours and where == "before_catalog_swap" and self._table.name()[-1] == spec.name:
        pause()
    return real_swap(self)

ingest_module.commit_batch = commit_batch
Transaction.commit_transaction = commit_transaction
report = ingest_module.ingest(Settings(), spec, run_id="zombie-" + uuid.uuid4().hex[:6],
                              dead_letter_table="bronze.dead_letters")
print(json.dumps({"report": report.as_metadata(), "outcomes": outcomes}))
"""


def start_zombie(
    spec: StreamSpec, pause_at: str, tmp: Path
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    paused, resume = tmp / "paused", tmp / "resume"
    env = {
        **os.environ,
        "LAKEHOUSE_TEST_SPEC": spec.model_dump_json(),
        "ZOMBIE_PAUSE": pause_at,
        "ZOMBIE_PAUSED_FILE": str(paused),
        "ZOMBIE_RESUME_FILE": str(resume),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 90
    while not paused.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            _out, err = proc.communicate(timeout=30)
            pytest.fail(f"the zombie never paused: {err.decode()[-3000:]}")
        time.sleep(0.05)
    return proc, paused, resume


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pause_at", "other_takes"),
    [
        ("before_commit_batch", "all"),
        ("before_catalog_swap", "all"),
        ("before_catalog_swap", "half"),
    ],
)
def test_zombie_writer_resumes_after_another_committed_its_range(
    stack: Settings, tmp_path: Path, pause_at: str, other_takes: str
) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=100_000))  # the zombie's range is one batch
    report = produce(
        stack,
        "clicks",
        count=1200,
        topic=spec.topic,
        malformed_fraction=0.03,
        seed=71,
        progress=False,
        collect_ids=True,
    )
    ends = end_offsets(stack, spec.topic)
    ingest_once(stack, spec, explicit_ranges={p: (0, 5) for p in ends})  # the table exists
    zombie, _paused, resume = start_zombie(spec, pause_at, tmp_path)
    try:
        # While the zombie sleeps holding [5, end), another writer commits that range.
        if other_takes == "all":
            other = ingest_once(stack, spec)
        else:
            other = ingest_once(
                stack, spec, explicit_ranges={p: (5, e // 2) for p, e in ends.items()}
            )
        assert other.records_written > 0
        table_then = load_catalog(stack).load_table(spec.table)
        offsets_then = committed_offsets(table_then, spec.topic)
    finally:
        resume.touch()
    out, err = zombie.communicate(timeout=120)
    assert zombie.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    [outcome] = result["outcomes"]
    table = load_catalog(stack).load_table(spec.table)
    rows = bronze_frame(stack, spec).height
    if other_takes == "all":
        # Everything it holds is in: it writes nothing, not even an empty snapshot.
        assert outcome["rows_written"] == 0 and outcome["snapshot_id"] is None
        assert table.current_snapshot().snapshot_id == table_then.current_snapshot().snapshot_id
        assert committed_offsets(table, spec.topic) == offsets_then
    else:
        # It writes only what the other did not: the rows past the other's offsets.
        assert outcome["rows_written"] == rows - table_then.scan().to_arrow().num_rows > 0
    if pause_at == "before_catalog_swap":
        assert outcome["conflicts"] >= 1  # its compare-and-set failed on the stale metadata
    assert committed_offsets(table, spec.topic) == ends
    assert_exactly_once(stack, spec, set(report.ids))
    assert_offsets_never_go_back(table, spec.topic)


# -- topic deleted and recreated -------------------------------------------------------------


def recreate_topic(settings: Settings, topic: str) -> None:
    admin = AdminClient(settings.kafka_client_config())  # type: ignore[arg-type]
    admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    deadline = time.monotonic() + 60
    while topic in list_topics(settings):
        assert time.monotonic() < deadline, f"{topic} still listed after deletion"
        time.sleep(0.2)


def snapshot_ids(settings: Settings, spec: StreamSpec) -> tuple[int | None, int | None]:
    catalog = load_catalog(settings)
    bronze = catalog.load_table(spec.table).current_snapshot()
    dead = table_or_none(catalog, DEAD_LETTERS)
    dead_snapshot = dead.current_snapshot() if dead is not None else None
    return (
        bronze.snapshot_id if bronze else None,
        dead_snapshot.snapshot_id if dead_snapshot else None,
    )


def test_topic_deleted_and_recreated_behind_the_table_refuses(stack: Settings) -> None:
    spec = fresh_spec()
    produce(
        stack,
        "clicks",
        count=600,
        topic=spec.topic,
        malformed_fraction=0.02,
        seed=81,
        progress=False,
    )
    ingest_once(stack, spec)
    table = load_catalog(stack).load_table(spec.table)
    offsets = committed_offsets(table, spec.topic)
    assert min(offsets.values()) > 20
    rows_before = bronze_frame(stack, spec).height
    dead_before = dead_letter_frame(stack, spec).height
    snapshots_before = snapshot_ids(stack, spec)

    recreate_topic(stack, spec.topic)
    produce(stack, "clicks", count=12, topic=spec.topic, seed=82, progress=False)  # 6 partitions
    with pytest.raises(OffsetGapError, match=r"deleted and recreated") as caught:
        plan(stack, spec)
    assert spec.topic in str(caught.value)
    with pytest.raises(OffsetGapError):
        ingest_once(stack, spec)

    # Nothing was written anywhere.
    table = load_catalog(stack).load_table(spec.table)
    assert committed_offsets(table, spec.topic) == offsets
    assert snapshot_ids(stack, spec) == snapshots_before
    assert bronze_frame(stack, spec).height == rows_before
    assert dead_letter_frame(stack, spec).height == dead_before


def test_topic_recreated_and_refilled_past_the_table_refuses(stack: Settings) -> None:
    spec = fresh_spec()
    produce(stack, "clicks", count=60, topic=spec.topic, seed=83, progress=False)
    ingest_once(stack, spec)
    recreate_topic(stack, spec.topic)
    produce(stack, "clicks", count=600, topic=spec.topic, seed=84, progress=False)
    with pytest.raises(OffsetGapError):
        plan(stack, spec)


# -- batches of nothing but dead letters -----------------------------------------------------


def test_dead_letter_only_batch_advances_the_offsets_once(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=1000))
    good = produce(
        stack, "payments", count=200, topic=spec.topic, seed=91, progress=False, collect_ids=True
    )
    ingest_once(stack, spec)
    table = load_catalog(stack).load_table(spec.table)
    snapshots = len(table.snapshots())

    bad = produce(
        stack,
        "payments",
        count=80,
        topic=spec.topic,
        malformed_fraction=1.0,
        seed=92,
        progress=False,
    )
    assert bad.delivered == 0 and sum(bad.malformed.values()) == 80
    run = ingest_once(stack, spec)
    assert run.records_written == 0 and run.dead_letters == 80 and run.lag_left == 0
    table = load_catalog(stack).load_table(spec.table)
    assert committed_offsets(table, spec.topic) == end_offsets(stack, spec.topic)
    # One snapshot carrying the offsets, no rows.
    assert len(table.snapshots()) == snapshots + 1
    summary = table.current_snapshot().summary
    assert (summary.get("added-records") or "0") == "0" and summary.get("total-records") == "200"
    assert plan(stack, spec) == []

    again = ingest_once(stack, spec)  # nothing left: no read, no dead letter twice
    assert again.records_written == 0 and again.dead_letters == 0 and again.batches == 0
    assert_exactly_once(stack, spec, set(good.ids))
    expected: Counter[str] = Counter()
    for kind, count in bad.malformed.items():
        expected[DEAD_LETTER_KIND[MalformedKind(kind)]] += count
    assert Counter(dead_letter_frame(stack, spec)["error_kind"].to_list()) == expected


def test_dead_letters_only_from_the_first_message(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=1000))
    produce(
        stack,
        "payments",
        count=60,
        topic=spec.topic,
        malformed_fraction=1.0,
        seed=93,
        progress=False,
    )
    first = ingest_once(stack, spec)
    assert first.dead_letters == 60
    again = ingest_once(stack, spec)
    assert again.dead_letters == 0  # exactly once, even when re-read
    assert dead_letter_frame(stack, spec).height == 60
    assert first.lag_left == 0 and plan(stack, spec) == []
