"""The shipped dagster.yaml is a valid Dagster instance configuration."""

import shutil
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[2]


def test_dagster_yaml_loads_as_an_instance(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        config = instance.get_concurrency_config()
        assert config.run_queue_config.max_concurrent_runs == 8
        limits = config.run_queue_config.tag_concurrency_limits
        assert {t["key"] for t in limits} == {
            "lakehouse/stream",
            "lakehouse/silver",
            "lakehouse/maintains",
        }
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60


def test_no_asset_takes_a_concurrency_pool() -> None:
    """A killed run never frees a pool slot it holds, which would stop that asset for good."""
    from definitions import defs

    graph = defs.resolve_asset_graph()
    pools = {key: graph.get(key).pools for key in graph.executable_asset_keys}
    assert pools and not any(pools.values()), pools
