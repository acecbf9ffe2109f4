"""The Dagster shells: definitions load, the lag sensor decides right, materializations run
through Dagster itself (in-process and through the dagster CLI)."""

import os
import subprocess
import sys

import dagster as dg
import pytest

from assets.bronze import bronze_asset
from assets.resources import LakehouseResource
from lakehouse.config import Declarations
from lakehouse.demo.producer import produce
from lakehouse.settings import Settings
from sensors.kafka_lag import lag_sensor
from tests.integration.ingest_helpers import ROOT, assert_exactly_once, fresh_spec

CLI = [sys.executable, "-m", "dagster"]


def test_definitions_validate_through_the_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [*CLI, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_asset_graph_keys_do_not_drift() -> None:
    from definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    silver = {
        "clicks/views_per_page_5m",
        "clicks/revenue_per_category_1m",
        "payments/amount_per_merchant_1m",
        "readings/temperature_per_device_1m",
    }
    tables = (
        "clicks",
        "payments",
        "readings",
        "dead_letters",
        "late_events",
        *(name.replace("/", "_") for name in silver),
    )
    maintenance = {
        f"maintenance/{table}/{job}"
        for table in tables
        for job in ("compaction", "snapshot_expiry", "orphan_files")
    }
    assert keys == {
        "kafka/clicks",
        "kafka/payments",
        "kafka/readings",
        "bronze/dead_letters",
        "bronze/clicks",
        "bronze/payments",
        "bronze/readings",
        "schema/clicks",
        "schema/payments",
        "schema/readings",
        "reference/products",
        "silver/late_events",
        *(f"silver/{name}" for name in silver),
        "bronze/clicks/replay_dead_letters",
        "bronze/payments/replay_dead_letters",
        "bronze/readings/replay_dead_letters",
        *maintenance,
    }
    graph = defs.resolve_asset_graph()
    for stream in ("clicks", "payments", "readings"):  # kafka/<topic> → schema → bronze
        schema = dg.AssetKey(["schema", stream])
        assert graph.get(schema).parent_keys == {dg.AssetKey(["kafka", stream])}
        assert schema in graph.get(dg.AssetKey(["bronze", stream])).parent_keys
    views = dg.AssetKey(["silver", "clicks", "views_per_page_5m"])
    revenue = dg.AssetKey(["silver", "clicks", "revenue_per_category_1m"])
    assert graph.get(views).parent_keys == {dg.AssetKey(["bronze", "clicks"])}
    assert graph.get(revenue).parent_keys == {
        dg.AssetKey(["bronze", "clicks"]),
        dg.AssetKey(["reference", "products"]),
    }
    sensors = {s.name for s in defs.sensors or []}
    assert sensors == {
        "kafka_lag_clicks",
        "kafka_lag_payments",
        "kafka_lag_readings",
        "schema_clicks",
        "schema_payments",
        "schema_readings",
        "silver_due_clicks",
        "silver_due_payments",
        "silver_due_readings",
        "small_files",
        "dead_runs",
    }
    assert {s.name for s in defs.schedules or []} == {"table_maintenance"}


@pytest.mark.integration
def test_lag_sensor_skips_then_requests_one_run_with_a_stable_key(stack: Settings) -> None:
    spec = fresh_spec(trigger={"min_lag_records": 50, "max_wait_seconds": 3600})
    produce(stack, "clicks", count=1, topic=spec.topic, seed=1, progress=False)
    sensor = lag_sensor(spec)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"lakehouse": LakehouseResource()}

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        small = sensor(context)
    assert not small.run_requests and "lag 1 < 50" in small.skip_reason.skip_message
    assert small.asset_events[0].metadata["lag"].value == 1

    produce(stack, "clicks", count=80, topic=spec.topic, seed=2, progress=False)
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = sensor(context)
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        second = sensor(context)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.tags["lakehouse/stream"] == spec.name
    assert sensor.job_name == f"ingest_{spec.name}"
    assert request.run_key.startswith(f"{spec.topic}@")
    assert (
        sum(
            int(r.split(":")[1].split("-")[1]) - int(r.split(":")[1].split("-")[0])
            for r in request.run_key.split("@")[1].split(",")
        )
        == 81
    )
    assert [r.run_key for r in second.run_requests] == [request.run_key]


@pytest.mark.integration
def test_materialize_through_dagster_reports_metadata_and_checks(stack: Settings) -> None:
    spec = fresh_spec()
    report = produce(
        stack,
        "payments",
        count=400,
        topic=spec.topic,
        malformed_fraction=0.05,
        seed=21,
        progress=False,
        collect_ids=True,
    )
    declarations = Declarations(streams={spec.name: spec})
    result = dg.materialize(
        [bronze_asset(spec, declarations)],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["records_written"] == report.delivered
    assert metadata["dead_letters"] == sum(report.malformed.values())
    assert metadata["lag_left"] == 0
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks if c.check_name != "dead_letter_rate")
    assert_exactly_once(stack, spec, set(report.ids))


@pytest.mark.integration
@pytest.mark.slow
def test_materialize_through_the_dagster_cli(stack: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    produce(stack, "readings", count=150, topic="readings", seed=8, progress=False)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [*CLI, "asset", "materialize", "-m", "definitions", "--select", "bronze/readings"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
