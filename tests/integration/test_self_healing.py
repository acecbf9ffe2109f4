"""A killed run never stops a stream: the same materialization again completes, and the dead
run is found by its silent heartbeat and marked failed (docs/self-healing.md)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lakehouse.config import StreamSpec
from lakehouse.demo.producer import produce
from lakehouse.settings import Settings
from sensors.run_health import check_runs, last_heard
from tests.integration import barrier
from tests.integration.ingest_helpers import DEAD_LETTERS, ROOT, assert_exactly_once, fresh_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLI = [sys.executable, "-m", "dagster", "asset", "materialize"]


def write_streams_file(path: Path, *specs: StreamSpec) -> Path:
    """A streams.yaml declaring only `specs`."""
    body = {
        "dead_letter_table": DEAD_LETTERS,
        "streams": {s.name: s.model_dump(mode="json", exclude={"name"}) for s in specs},
    }
    path.write_text(yaml.safe_dump(body))
    return path


def wait_for_arrival(folder: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    """The pid waiting at the barrier; fails if the process ends first or never arrives."""
    while not (arrived := barrier.arrivals(folder)):
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before the barrier:\n{err.decode()[-3000:]}")
        assert time.monotonic() < deadline, "no run reached the barrier"
        time.sleep(0.1)
    [pid] = arrived
    return pid


def test_materialize_killed_mid_run_then_the_same_command_completes(
    stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = fresh_spec("clicks", batch={"max_records": 100})
    produced = produce(
        stack,
        "clicks",
        count=450,
        topic=spec.topic,
        malformed_fraction=0.02,
        seed=71,
        progress=False,
        collect_ids=True,
    )
    assert produced.ok
    folder = tmp_path / "barrier"
    folder.mkdir()
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")  # the shipped instance
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "LAKEHOUSE_STREAMS_FILE": str(write_streams_file(tmp_path / "streams.yaml", spec)),
        barrier.DIR_ENV: str(folder),
    }
    select = ["--select", f"bronze/{spec.name}"]

    # First materialization: stopped after its first batch committed, inside the second
    # commit, and SIGKILLed there (as the kernel's OOM killer does).
    barrier.arm(folder, "before_commit", 2)
    first = subprocess.Popen(
        [*CLI, "-m", "tests.integration.barrier_definitions", *select],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        pid = wait_for_arrival(folder, first, time.monotonic() + 300)
        assert pid == first.pid  # the in-process executor: the step runs in the CLI process
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL

    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    with dg.DagsterInstance.get() as instance:
        [dead] = instance.get_run_records()
        assert dead.dagster_run.status == dg.DagsterRunStatus.STARTED  # left behind for good
        assert dead.dagster_run.tags["lakehouse/stream"] == spec.name  # the step tagged it

        # The same command again, nothing armed: it must not wait on anything the dead run held.
        barrier.disarm(folder)
        again = subprocess.run(
            [*CLI, "-m", "definitions", *select],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert_exactly_once(stack, spec, set(produced.ids))

        # The lag sensor's health check finds the dead run by its silence and fails it.
        tags = {"lakehouse/stream": spec.name}
        silent_since = last_heard(instance, dead)
        health = check_runs(instance, tags, dead_after_seconds=60, now=silent_since + 61)
        assert health.alive == [] and [r.run_id for r in health.dead] == [dead.dagster_run.run_id]
        statuses = {r.dagster_run.run_id: r.dagster_run.status for r in instance.get_run_records()}
        assert statuses[dead.dagster_run.run_id] == dg.DagsterRunStatus.FAILURE
        assert sorted(s.value for s in statuses.values()) == ["FAILURE", "SUCCESS"]
