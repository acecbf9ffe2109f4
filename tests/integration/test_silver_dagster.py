"""The silver Dagster shells over a real catalog: the asset materializes with its metadata
and checks, the blocking check catches a silver row that bronze does not back, and the
sensor asks for one run per bronze state and none once silver has caught up."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from pyiceberg.catalog import Catalog

from assets.resources import LakehouseResource
from assets.silver import LATE_RATE_CHECK, RECOMPUTE_CHECK, WATERMARK_CHECK, silver_asset
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.settings import Settings
from lakehouse.windowing.audit import audit_recent_windows
from lakehouse.windowing.silver import run_silver_pass, silver_table_name
from sensors.silver import silver_sensor
from tests.integration.silver_helpers import Bronze, Click, at, click_spec

COUNT = {"tumbling": "1m", "group_by": ["page"], "aggregate": {"n": "count(*)"}}


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Catalog]]:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    settings = Settings()
    yield settings, load_catalog(settings)


def _bronze(catalog: Catalog):  # type: ignore[no-untyped-def]
    spec = click_spec({"w": COUNT})
    bronze = Bronze(catalog, spec)
    bronze.append([Click(0, at(s), at(s), page=f"/p{(s // 2) % 20}") for s in range(0, 300, 2)])
    return spec, bronze


def test_the_asset_materializes_with_metadata_and_checks(lake: tuple[Settings, Catalog]) -> None:
    spec, _ = _bronze(lake[1])
    result = dg.materialize(
        [silver_asset(spec, "w", {})],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["rows_read"] == 150
    assert metadata["rows_emitted"] == metadata["windows_closed"] == 4 * 20  # four closed minutes
    assert metadata["watermark_lag_seconds"] > 0  # numeric: the UI plots it
    assert metadata["watermark"] == at(298 - 10).timestamp()
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {RECOMPUTE_CHECK, LATE_RATE_CHECK, WATERMARK_CHECK}
    assert checks[RECOMPUTE_CHECK].passed and checks[LATE_RATE_CHECK].passed
    assert checks[RECOMPUTE_CHECK].metadata["windows_checked"].value == 20
    # The event times are of 2026-01-01 while the wall clock is later: a stalled watermark.
    assert not checks[WATERMARK_CHECK].passed


def test_the_audit_catches_a_row_bronze_does_not_back(lake: tuple[Settings, Catalog]) -> None:
    settings, catalog = lake
    spec, bronze = _bronze(catalog)
    run_silver_pass(settings, spec, "w", catalog=catalog, now=at(300))
    bronze.append([Click(0, at(10), at(301), page="/p0"), Click(0, at(400), at(400))])
    run_silver_pass(settings, spec, "w", catalog=catalog, now=at(400))  # a correction
    assert audit_recent_windows(catalog, spec, "w", limit=100).ok
    table = catalog.load_table(silver_table_name(spec, "w"))
    rows = pl.from_arrow(table.scan().to_arrow())
    assert isinstance(rows, pl.DataFrame)
    tampered = rows.with_columns(
        pl.when(pl.col("page") == "/p4").then(pl.col("n") + 1).otherwise(pl.col("n")).alias("n")
    )
    tx = cas_transaction(table)
    tx.overwrite(tampered.to_arrow().cast(table.schema().as_arrow()))
    tx.commit_transaction()
    audit = audit_recent_windows(catalog, spec, "w", limit=100)
    assert not audit.ok and all("/p4" in problem for problem in audit.mismatches)


def test_the_sensor_asks_once_per_bronze_state(lake: tuple[Settings, Catalog]) -> None:
    settings, catalog = lake
    spec, bronze = _bronze(catalog)
    sensor = silver_sensor(spec)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"lakehouse": LakehouseResource()}

    def evaluate() -> dg.SensorResult:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            return sensor(context)  # type: ignore[no-any-return]

    first, second = evaluate(), evaluate()
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.asset_selection == [dg.AssetKey(["silver", spec.name, "w"])]
    assert request.tags == {"lakehouse/silver": spec.name}
    assert [r.run_key for r in second.run_requests] == [request.run_key]
    run_silver_pass(settings, spec, "w", catalog=catalog)
    caught_up = evaluate()
    assert not caught_up.run_requests and "up to date" in caught_up.skip_reason.skip_message
    bronze.append([Click(1, at(500), at(500))])
    again = evaluate()
    assert len(again.run_requests) == 1 and again.run_requests[0].run_key != request.run_key


def test_the_sensor_loads_a_missing_lookup_in_the_same_run(lake: tuple[Settings, Catalog]) -> None:
    joined = {**COUNT, "join": {"table": "reference.sensor_products", "on": "product_id"}}
    spec = click_spec({"w": joined})
    Bronze(lake[1], spec).append([Click(0, at(s), at(s)) for s in range(0, 100, 5)])
    lookup = dg.AssetKey(["reference", "sensor_products"])
    sensor = silver_sensor(spec, {"reference.sensor_products": lookup})
    with dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"lakehouse": LakehouseResource()}
    ) as context:
        result = sensor(context)
    [request] = result.run_requests
    assert request.asset_selection == [lookup, dg.AssetKey(["silver", spec.name, "w"])]
