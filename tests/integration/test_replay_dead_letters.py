"""Dead-letter replay, exactly once: messages dead-lettered as `unknown-schema-id` while their
schema was missing from the registry are replayed once it is registered again; every one lands
in bronze once, whether the replay runs twice, at the same time as a normal run, against a
second replay, or stops between its two commits; a later normal run over the whole range adds
nothing. Interleavings are forced through the replay's seams, never by timing."""

import json
import uuid
from typing import Any

import dagster as dg
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from assets.replay import replay_asset
from assets.resources import LakehouseResource
from lakehouse.config import Declarations, StreamSpec
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.iceberg.dead_letter_replays import Selection
from lakehouse.kafka.admin import ensure_topic
from lakehouse.replay import ReplayReport, replay_dead_letters
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import (
    DEAD_LETTERS,
    assert_exactly_once,
    dead_letter_frame,
    fresh_spec,
    ingest_once,
)
from tests.integration.schema_helpers import BASE_FIELDS, by_id, produce_avro, record, table_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """v1, and a v2 (one more optional field) unique to this test: its registry id is its own."""
    doc = f"replay test {uuid.uuid4().hex}"
    v1 = {**record("Evt", BASE_FIELDS), "doc": doc}
    channel = {"name": "channel", "type": ["null", "string"], "default": None}
    return v1, {**record("Evt", [*BASE_FIELDS, channel]), "doc": doc}


def v1_event(i: int) -> dict[str, Any]:
    return {"event_id": f"v1-{i}", "event_time": 1_700_000_000_000_000 + i}


def v2_event(i: int) -> dict[str, Any]:
    return {"event_id": f"v2-{i}", "event_time": 1_700_000_000_000_000 + i, "channel": f"c{i}"}


def dead_lettered(stack: Settings) -> tuple[StreamSpec, dict[str, Any], set[str]]:
    """v2 messages ingested while v2 was missing from the registry (all dead letters), then v2
    registered again under the same id (a registry restored); returns the spec, v2 and ids."""
    spec = fresh_spec()
    ensure_topic(stack, spec.topic, partitions=2)
    v1, v2 = schemas()
    for partition in (0, 1):
        produce_avro(stack, spec.topic, [(v1, v1_event(10 * partition + i)) for i in range(3)],
                     partition=partition)  # fmt: skip
        produce_avro(stack, spec.topic, [(v2, v2_event(10 * partition + i)) for i in range(3)],
                     partition=partition)  # fmt: skip
    client = SchemaRegistryClient(stack.registry_client_config())
    v2_id = client.get_latest_version(spec.subject).schema_id
    client.delete_version(spec.subject, 2)
    client.delete_version(spec.subject, 2, permanent=True)
    with pytest.raises(SchemaRegistryError):
        SchemaRegistryClient(stack.registry_client_config()).get_schema(v2_id)

    report = ingest_once(stack, spec)
    assert report.records_written == 6 and report.dead_letters == 6
    assert set(dead_letter_frame(stack, spec)["error_kind"]) == {"unknown-schema-id"}

    restored = client.register_schema(spec.subject, Schema(json.dumps(v2), "AVRO"))
    assert restored == v2_id, "the registry must give the restored schema its old id back"
    ids = {f"v1-{i}" for i in (0, 1, 2, 10, 11, 12)} | {f"v2-{i}" for i in (0, 1, 2, 10, 11, 12)}
    return spec, v2, ids


def replay(stack: Settings, spec: StreamSpec, **kwargs: Any) -> ReplayReport:
    kwargs.setdefault("run_id", f"replay-{uuid.uuid4().hex[:6]}")
    return replay_dead_letters(stack, spec, dead_letter_table=DEAD_LETTERS, **kwargs)


def assert_all_replayed(stack: Settings, spec: StreamSpec, ids: set[str]) -> None:
    assert_exactly_once(stack, spec, ids, dead_offsets=set())
    rows = by_id(table_rows(stack, spec.table))
    for i in (0, 1, 2, 10, 11, 12):
        assert rows[f"v2-{i}"]["channel"] == f"c{i}"
        assert rows[f"v1-{i}"]["channel"] is None
    dead = dead_letter_frame(stack, spec)
    assert dead.height == 6 and dead["replayed_at"].null_count() == 0


def test_replay_writes_each_once_and_again_adds_nothing(stack: Settings) -> None:
    spec, _, ids = dead_lettered(stack)
    first = replay(stack, spec, selection=None)
    assert (first.selected, first.written, first.marked, first.still_failing) == (6, 6, 6, {})
    offsets = committed_offsets(load_catalog(stack).load_table(spec.table), spec.topic)
    assert offsets == {0: 6, 1: 6}  # the replay never moves the offsets
    assert_all_replayed(stack, spec, ids)

    second = replay(stack, spec)
    assert (second.selected, second.written) == (0, 0)
    everything = {p: (0, n) for p, n in offsets.items()}
    later = ingest_once(stack, spec, explicit_ranges=everything)  # a normal run over it all
    assert later.records_written == 0 and later.dead_letters == 0
    assert_all_replayed(stack, spec, ids)


def test_replay_at_the_same_time_as_a_normal_run(stack: Settings) -> None:
    spec, v2, ids = dead_lettered(stack)
    produce_avro(stack, spec.topic, [(v2, v2_event(20 + i)) for i in range(4)], partition=0)
    ids |= {f"v2-{20 + i}" for i in range(4)}
    attempts: list[int] = []

    def normal_run_commits_first(attempt: int) -> None:
        attempts.append(attempt)
        if attempt == 1:  # between the replay's look at bronze and its commit
            assert ingest_once(stack, spec).records_written == 4

    report = replay(stack, spec, before_commit=normal_run_commits_first)
    assert attempts == [1, 2]  # the normal run's commit made the replay look again
    assert report.written == 6
    assert_all_replayed_plus(stack, spec, ids)


def assert_all_replayed_plus(stack: Settings, spec: StreamSpec, ids: set[str]) -> None:
    assert_exactly_once(stack, spec, ids, dead_offsets=set())
    assert dead_letter_frame(stack, spec)["replayed_at"].null_count() == 0


def test_two_replays_at_once(stack: Settings) -> None:
    spec, _, ids = dead_lettered(stack)
    inner: list[ReplayReport] = []

    def other_replay_first(attempt: int) -> None:
        if attempt == 1:
            inner.append(replay(stack, spec))

    outer = replay(stack, spec, before_commit=other_replay_first)
    assert inner[0].written == 6 and inner[0].marked == 6
    assert outer.written == 0 and outer.already_in_bronze == 6 and outer.marked == 0
    assert_all_replayed(stack, spec, ids)


def test_a_replay_stopped_between_its_two_commits_is_finished_by_the_next(
    stack: Settings,
) -> None:
    spec, _, ids = dead_lettered(stack)

    def stop() -> None:
        raise RuntimeError("stopped after the bronze commit")

    with pytest.raises(RuntimeError, match="stopped"):
        replay(stack, spec, before_marking=stop)
    assert len(table_rows(stack, spec.table)) == 12  # in bronze, not marked yet
    assert dead_letter_frame(stack, spec)["replayed_at"].null_count() == 6
    assert_exactly_once(stack, spec, ids, dead_offsets=set())  # pending counts as replayed

    again = replay(stack, spec)
    assert (again.selected, again.written, again.already_in_bronze, again.marked) == (6, 0, 6, 6)
    assert_all_replayed(stack, spec, ids)


def test_a_selection_and_dead_letters_that_still_fail(stack: Settings) -> None:
    spec, _, _ = dead_lettered(stack)
    client = SchemaRegistryClient(stack.registry_client_config())
    client.delete_version(spec.subject, 2)
    client.delete_version(spec.subject, 2, permanent=True)  # lost again
    report = replay(
        stack,
        spec,
        selection=Selection(frozenset({"unknown-schema-id"}), ranges={0: (0, 6)}),
    )
    assert report.selected == 3 and report.written == 0  # partition 0's only
    assert report.still_failing == {"unknown-schema-id": 3}
    dead = dead_letter_frame(stack, spec)
    assert dead["replayed_at"].null_count() == 6
    retried = dead.filter(dead["replay_run_id"].is_not_null())
    assert sorted(retried["offset"].to_list()) == [3, 4, 5] and set(retried["partition"]) == {0}
    assert all("not found" in m for m in retried["error_message"])


def test_replay_through_dagster(stack: Settings) -> None:
    spec, _, ids = dead_lettered(stack)
    declarations = Declarations(streams={spec.name: spec})
    result = dg.materialize(
        [replay_asset(spec, declarations)],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={
            "ops": {
                f"bronze__{spec.name}__replay_dead_letters": {
                    "config": {"error_kinds": ["unknown-schema-id"], "offsets": "0:0-6,1:0-6"}
                }
            }
        },
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["written_to_bronze"] == 6 and metadata["dead_letters_marked"] == 6
    assert_all_replayed(stack, spec, ids)
