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
        assert config.run_queue_config.max_concurrent_runs == 4
        limits = config.run_queue_config.tag_concurrency_limits
        assert any(t["key"] == "lakehouse/stream" for t in limits)
        assert config.pool_config.default_pool_limit == 1
