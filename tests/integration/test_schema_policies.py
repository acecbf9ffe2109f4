"""Each policy for a truly incompatible writer schema (`amount` double → string, registered
under a subject whose compatibility is NONE): pause commits the prefix and stops until the
policy, the table or the registry is fixed; dead_letter; new_table."""

from typing import Any

import dagster as dg
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from assets.resources import LakehouseResource
from lakehouse.config import StreamSpec
from lakehouse.errors import StreamPausedError
from lakehouse.iceberg.catalog import load_catalog, table_or_none
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.kafka.admin import ensure_topic
from lakehouse.schema.pause import read_pause
from lakehouse.settings import Settings
from sensors.kafka_lag import lag_sensor
from tests.integration.ingest_helpers import (
    assert_exactly_once,
    dead_letter_frame,
    fresh_spec,
    ingest_once,
)
from tests.integration.schema_helpers import (
    BASE_FIELDS,
    by_id,
    produce_avro,
    record,
    set_compatibility,
    table_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

V1 = record("Payment", [*BASE_FIELDS, {"name": "amount", "type": "double"}])
V2 = record("Payment", [*BASE_FIELDS, {"name": "amount", "type": "string"}])  # incompatible


def v1(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return V1, {"event_id": f"v1-{i}", "event_time": 1_700_000_000_000_000 + i, "amount": i + 0.25}


def v2(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return V2, {"event_id": f"v2-{i}", "event_time": 1_700_000_000_000_000 + i, "amount": f"{i}"}


def with_policy(spec: StreamSpec, policy: str) -> StreamSpec:
    return spec.model_copy(update={"schema_policy": spec.schema_policy.model_copy(
        update={"on_incompatible": policy})})  # fmt: skip


def started(stack: Settings, policy: str) -> StreamSpec:
    """A stream on two partitions: v1 events ingested, then the incompatible v2 registered
    (compatibility NONE) and produced in partition 0 between v1 events."""
    spec = with_policy(fresh_spec(trigger={"min_lag_records": 1}), policy)
    ensure_topic(stack, spec.topic, partitions=2)
    produce_avro(stack, spec.topic, [v1(i) for i in range(5)], partition=0)
    produce_avro(stack, spec.topic, [v1(i) for i in range(5, 8)], partition=1)
    assert ingest_once(stack, spec).records_written == 8
    set_compatibility(stack, spec.subject, "NONE")
    produce_avro(stack, spec.topic, [v1(8), v1(9), v2(0), v1(10), v2(1)], partition=0)  # 5..9
    produce_avro(stack, spec.topic, [v1(11), v1(12)], partition=1)  # offsets 3, 4
    return spec


def sensor_skip_reason(spec: StreamSpec) -> tuple[str | None, int]:
    sensor = lag_sensor(spec)
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"lakehouse": LakehouseResource()}
    ) as context:
        result = sensor(context)
    reason = result.skip_reason.skip_message if result.skip_reason else None
    return reason, len(result.run_requests or [])


def test_pause_commits_the_prefix_stops_and_resumes_after_a_policy_change(
    stack: Settings,
) -> None:
    spec = started(stack, "pause")
    with pytest.raises(StreamPausedError) as stopped:
        ingest_once(stack, spec)
    message = str(stopped.value)
    for part in (spec.subject, "v2", "amount", "double → string", "partition 0 at offset 7"):
        assert part in message, (part, message)

    table = load_catalog(stack).load_table(spec.table)
    assert committed_offsets(table, spec.topic) == {0: 7, 1: 5}  # everything before v2-0
    assert set(by_id(table_rows(stack, spec.table))) == {f"v1-{i}" for i in range(13) if i != 10}
    pause = read_pause(table)
    assert pause is not None and pause.stops == {0: 7} and pause.version == 2

    reason, requests = sensor_skip_reason(spec)
    assert requests == 0 and reason is not None and reason.startswith("paused: ")
    assert "amount" in reason and "double → string" in reason
    with pytest.raises(StreamPausedError):  # still blocked: nothing read, nothing committed
        ingest_once(stack, spec)
    assert committed_offsets(load_catalog(stack).load_table(spec.table), spec.topic) == {0: 7, 1: 5}

    fixed = with_policy(spec, "dead_letter")
    assert sensor_skip_reason(fixed)[1] == 1  # the next tick resumes the stream by itself
    report = ingest_once(stack, fixed)
    assert report.records_written == 1 and report.dead_letters == 2  # v1-10 in, v2-0/1 out
    assert read_pause(load_catalog(stack).load_table(spec.table)) is None
    assert_incompatible_dead_letters(stack, fixed, 2)
    assert_exactly_once(stack, fixed, {f"v1-{i}" for i in range(13)}, {(0, 7), (0, 9)})


def test_pause_resumes_after_the_table_is_changed(stack: Settings) -> None:
    spec = with_policy(fresh_spec(trigger={"min_lag_records": 1}), "pause")
    ensure_topic(stack, spec.topic, partitions=1)
    produce_avro(stack, spec.topic, [v1(i) for i in range(3)])
    ingest_once(stack, spec)
    set_compatibility(stack, spec.subject, "NONE")
    produce_avro(stack, spec.topic, [v2(i) for i in range(3)])  # the producers switched for good
    with pytest.raises(StreamPausedError):
        ingest_once(stack, spec)
    assert sensor_skip_reason(spec)[1] == 0

    # The owner decides `amount` is a string from now on: the old column goes (its data stays
    # in the snapshots that have it); the writer's `amount` becomes a new column.
    table = load_catalog(stack).load_table(spec.table)
    with table.update_schema() as update:
        update.delete_column("amount")
    assert sensor_skip_reason(spec)[1] == 1
    report = ingest_once(stack, spec)
    assert report.records_written == 3 and report.dead_letters == 0
    rows = by_id(table_rows(stack, spec.table))
    assert {k: v["amount"] for k, v in rows.items()} == {
        **{f"v1-{i}": None for i in range(3)},
        **{f"v2-{i}": f"{i}" for i in range(3)},
    }


def test_pause_resumes_after_the_registry_drops_the_version(stack: Settings) -> None:
    spec = with_policy(fresh_spec(trigger={"min_lag_records": 1}), "pause")
    ensure_topic(stack, spec.topic, partitions=1)
    produce_avro(stack, spec.topic, [v1(0)])
    ingest_once(stack, spec)
    set_compatibility(stack, spec.subject, "NONE")
    produce_avro(stack, spec.topic, [v2(0), v1(1)])
    with pytest.raises(StreamPausedError):
        ingest_once(stack, spec)
    client = SchemaRegistryClient(stack.registry_client_config())
    client.delete_version(spec.subject, 2)
    client.delete_version(spec.subject, 2, permanent=True)
    assert sensor_skip_reason(spec)[1] == 1
    report = ingest_once(stack, spec)  # v2-0 is now an unknown schema id: a dead letter
    assert report.records_written == 1 and report.dead_letters == 1
    assert_exactly_once(stack, spec, {"v1-0", "v1-1"}, {(0, 1)})


def test_dead_letter_policy_keeps_the_stream_going(stack: Settings) -> None:
    spec = started(stack, "dead_letter")
    report = ingest_once(stack, spec)
    assert report.records_written == 5 and report.dead_letters == 2
    assert_incompatible_dead_letters(stack, spec, 2)
    assert_exactly_once(stack, spec, {f"v1-{i}" for i in range(13)}, {(0, 7), (0, 9)})


def test_new_table_policy_writes_the_version_to_its_own_table(stack: Settings) -> None:
    spec = started(stack, "new_table")
    report = ingest_once(stack, spec)
    assert report.records_written == 5 and report.dead_letters == 0
    assert report.records_to_version_tables == 2
    rows = by_id(table_rows(stack, spec.table))
    assert set(rows) == {f"v1-{i}" for i in range(13)}
    assert all(isinstance(r["amount"], float) for r in rows.values())  # never coerced
    versioned = by_id(table_rows(stack, f"{spec.table}__v2"))
    assert versioned == {
        "v2-0": {"event_id": "v2-0", "event_time": versioned["v2-0"]["event_time"], "amount": "0"},
        "v2-1": {"event_id": "v2-1", "event_time": versioned["v2-1"]["event_time"], "amount": "1"},
    }
    catalog = load_catalog(stack)
    assert committed_offsets(catalog.load_table(f"{spec.table}__v2"), spec.topic) == {0: 10, 1: 5}
    assert ingest_once(stack, spec).records_written == 0  # a re-run adds nothing anywhere
    assert len(table_rows(stack, f"{spec.table}__v2")) == 2
    assert (
        table_or_none(catalog, "bronze.dead_letters") is None
        or dead_letter_frame(stack, spec).is_empty()
    )


def assert_incompatible_dead_letters(stack: Settings, spec: StreamSpec, count: int) -> None:
    dead = dead_letter_frame(stack, spec)
    assert dead.height == count
    assert set(dead["error_kind"]) == {"incompatible-schema"}
    assert set(dead["offset"]) == {7, 9}
    for message in dead["error_message"]:
        assert "amount: double → string" in message and spec.subject in message
    assert len(set(dead["schema_id"])) == 1  # the writer's schema id
