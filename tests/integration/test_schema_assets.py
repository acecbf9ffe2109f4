"""The schema asset and sensor through Dagster: a new version is seen within one tick without
reading Kafka, a materialization records the diff and the schema history (whoever applied the
change first), the check fails while a stream is paused."""

import json

import dagster as dg
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from assets.bronze import bronze_asset, version_table_specs
from assets.resources import LakehouseResource
from assets.schema import FITS_CHECK, schema_asset
from lakehouse.config import Declarations, SchemaPolicy, StreamSpec
from lakehouse.errors import StreamPausedError
from lakehouse.settings import Settings
from sensors.schema import schema_sensor
from tests.conftest import free_port
from tests.integration.ingest_helpers import fresh_spec, ingest_once
from tests.integration.schema_helpers import BASE_FIELDS, produce_avro, record, set_compatibility

pytestmark = pytest.mark.integration

V1 = record("Evt", [*BASE_FIELDS, {"name": "amount", "type": "double"}])
V2 = record("Evt", [*BASE_FIELDS, {"name": "amount", "type": "double"},
                    {"name": "channel", "type": ["null", "string"], "default": None}])  # fmt: skip
BAD = record("Evt", [*BASE_FIELDS, {"name": "amount", "type": "string"}])


def event(i: int, **extra: object) -> dict[str, object]:
    return {"event_id": f"e{i}", "event_time": 1_700_000_000_000_000 + i, "amount": 1.5, **extra}


def register(stack: Settings, subject: str, schema: dict[str, object]) -> int:
    client = SchemaRegistryClient(stack.registry_client_config())
    return client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))


def materialize(spec: StreamSpec) -> tuple[dict[str, object], dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [schema_asset(spec)],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=True,
    )
    [materialization] = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == FITS_CHECK
    return {k: v.value for k, v in materialization.metadata.items()}, check


def test_schema_sensor_sees_a_new_version_within_one_tick_without_kafka(stack: Settings) -> None:
    spec = fresh_spec()
    register(stack, spec.subject, V1)
    sensor = schema_sensor(spec)
    # Kafka unreachable for the sensor: it reads the registry and the catalog, never a message.
    nowhere = LakehouseResource(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor: str | None) -> dg.SensorResult:
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"lakehouse": nowhere}
        ) as context:
            return sensor(context)

    first = tick(None)
    [request] = first.run_requests or []
    assert f"{spec.subject}@v1:" in (request.run_key or "")
    quiet = tick(first.cursor)
    assert not quiet.run_requests and "nothing new" in quiet.skip_reason.skip_message
    register(stack, spec.subject, V2)
    seen = tick(quiet.cursor or first.cursor)
    [request] = seen.run_requests or []
    assert f"{spec.subject}@v2:" in (request.run_key or "")
    assert sensor.job_name == f"apply_schema_{spec.name}"


@pytest.mark.slow
def test_materialization_records_the_diff_and_the_history(stack: Settings) -> None:
    spec = fresh_spec()
    produce_avro(stack, spec.topic, [(V1, event(0))])
    ingest_once(stack, spec)
    register(stack, spec.subject, V2)
    metadata, check = materialize(spec)
    assert check.passed
    assert metadata["subject_version"] == 2 and metadata["iceberg_schema_id"] == 1
    assert metadata["fields_added"] == "channel: added as string"
    assert str(metadata["applied_by"]).startswith(f"schema/{spec.name} run ")
    history = metadata["schema_history"]
    assert [r.data["iceberg_schema_id"] for r in history.records] == [1, 0]  # newest first
    assert history.records[0].data["writer_schema"].startswith(f"{spec.subject} v2 ")
    produce_avro(stack, spec.topic, [(V2, event(1, channel="web"))])
    report = ingest_once(stack, spec)  # nothing left to change: the run writes at once
    assert report.records_written == 1 and report.dead_letters == 0

    again, _ = materialize(spec)  # idempotent: the diff stays, nothing is applied twice
    assert again["fields_added"] == "channel: added as string" and again["applied_now"] == 0


@pytest.mark.slow
def test_a_change_a_run_applied_first_shows_in_the_next_materialization(stack: Settings) -> None:
    spec = fresh_spec()
    produce_avro(stack, spec.topic, [(V1, event(0))])
    ingest_once(stack, spec)
    produce_avro(stack, spec.topic, [(V2, event(1, channel="app"))])
    ingest_once(stack, spec, run_id="inline-run")  # meets v2 first: applies it inline
    metadata, check = materialize(spec)
    assert check.passed and metadata["fields_added"] == "channel: added as string"
    assert metadata["applied_by"] == "run inline-run" and metadata["applied_now"] == 0


@pytest.mark.slow
def test_check_fails_while_the_stream_is_paused(stack: Settings) -> None:
    spec = fresh_spec()
    produce_avro(stack, spec.topic, [(V1, event(0))])
    ingest_once(stack, spec)
    set_compatibility(stack, spec.subject, "NONE")
    produce_avro(stack, spec.topic, [(BAD, {**event(1), "amount": "x"})])
    with pytest.raises(StreamPausedError):
        ingest_once(stack, spec)
    metadata, check = materialize(spec)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    reasons = check.metadata["reasons"].value
    assert "amount: double → string" in reasons and f"{spec.subject} v2" in reasons
    assert "paused" in check.metadata["paused"].value
    assert "v2 (schema id" in str(metadata["incompatible_versions"])


@pytest.mark.slow
def test_new_table_version_is_an_asset_of_its_own(stack: Settings) -> None:
    spec = fresh_spec()
    spec = spec.model_copy(update={"schema_policy": SchemaPolicy(on_incompatible="new_table")})
    produce_avro(stack, spec.topic, [(V1, event(0))])
    ingest_once(stack, spec)
    set_compatibility(stack, spec.subject, "NONE")
    produce_avro(stack, spec.topic, [(BAD, {**event(1), "amount": "x"}), (V1, event(2))])
    declarations = Declarations(streams={spec.name: spec})
    result = dg.materialize(
        [bronze_asset(spec, declarations)],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    versioned = dg.AssetKey(["bronze", f"{spec.name}__v2"])
    events = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    [mine] = [m for m in events if m.asset_key == versioned]
    assert mine.metadata["records_written"].value == 1
    [listed] = version_table_specs(declarations, stack)
    assert listed.key == versioned and dg.AssetKey(["schema", spec.name]) in {
        d.asset_key for d in listed.deps
    }


@pytest.mark.slow
def test_a_table_made_after_several_versions_shows_each_step(stack: Settings) -> None:
    """v1 and v2 registered before any run (the demo's switch happened before Dagster was
    up): the table is made from v1 and evolved to v2, so the switch still shows as a diff."""
    spec = fresh_spec()
    produce_avro(stack, spec.topic, [(V1, event(0)), (V2, event(1, channel="web"))])
    report = ingest_once(stack, spec, run_id="first")
    assert report.records_written == 2
    metadata, check = materialize(spec)
    assert check.passed and metadata["fields_added"] == "channel: added as string"
    assert metadata["applied_by"] == "run first"
    history = metadata["schema_history"].records
    assert [r.data["writer_schema"].split(" (")[0] for r in history] == [
        f"{spec.subject} v2",
        f"{spec.subject} v1",
    ]
