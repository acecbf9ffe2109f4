"""The local stack's pieces that need no JVM: tool checks, config text, process handling."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lakehouse.errors import MissingToolError, StackError
from lakehouse.settings import Settings
from lakehouse.stack import LocalStack
from lakehouse.stack.kafka import new_cluster_id, server_properties
from lakehouse.stack.options import StackOptions
from lakehouse.stack.processes import running_pid, start_detached, stop, wait_until_answering
from lakehouse.stack.tools import find_java, find_maven


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no java and no mvn, and no JDK to be found anywhere else."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("LAKEHOUSE_JAVA_HOME", raising=False)
    monkeypatch.setenv("LAKEHOUSE_JVM_DIRS", "")
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LAKEHOUSE_CACHE_DIR", str(tmp_path / "cache"))
    return empty


def test_missing_java_names_what_to_install(no_tools: Path) -> None:
    with pytest.raises(MissingToolError, match=r"Java 17\+.*Found none.*install a JDK 17"):
        LocalStack(Settings()).up()
    assert not (Path(os.environ["LAKEHOUSE_HOME"]) / "kafka").exists()


def test_old_java_on_path_is_refused(no_tools: Path) -> None:
    _script(no_tools, "java", "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2")
    with pytest.raises(MissingToolError, match=r"Java 17\+.*\(Java 11\)"):
        find_java(17, jvm_dirs="")


def test_missing_maven_names_what_to_install(
    no_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_java = shutil.which("java", path=os.defpath + ":/usr/bin")
    if real_java is None:
        pytest.skip("no java on this machine")
    monkeypatch.setenv("LAKEHOUSE_JAVA_HOME", str(Path(real_java).resolve().parents[1]))
    with pytest.raises(MissingToolError, match=r"Maven.*apt-get install maven"):
        LocalStack(Settings()).up()
    with pytest.raises(MissingToolError):
        find_maven()


def test_server_properties_single_combined_node(tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:19092")
    text = server_properties(settings, 19093, tmp_path)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_controller_port_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.stack.kafka import controller_port

    settings = Settings(kafka_bootstrap_servers="127.0.0.1:19092")
    monkeypatch.setenv("LAKEHOUSE_KAFKA_CONTROLLER_PORT", "23456")
    assert controller_port(settings, StackOptions()) == 23456


def test_cluster_id_is_kafka_shaped() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_start_detached_then_stop_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "svc.pid", tmp_path / "svc.log"
    # A parent that ignores SIGTERM, with a child in the same group.
    argv = ["sh", "-c", "trap '' TERM; sleep 300 & echo started; wait"]
    pid = start_detached(argv, cwd=tmp_path, log_file=log, pid_file=pid_file)
    assert running_pid(pid_file) == pid
    assert os.getpgid(pid) == pid != os.getpgid(0)
    children = psutil.Process(pid).children(recursive=True)
    assert stop(pid_file, timeout=1) == pid
    assert not pid_file.exists()
    for process in children:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_stale_pid_file_is_ignored_and_removed(tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid_file.write_text(f"{done.stdout.strip()} 12345.0\n")
    assert running_pid(pid_file) is None
    assert not pid_file.exists()
    # A live pid with another start time is someone else's process, not ours.
    pid_file.write_text(f"{os.getpid()} 12345.0\n")
    assert running_pid(pid_file) is None
    pid_file.write_text("garbage")
    assert running_pid(pid_file) is None
    assert stop(pid_file, timeout=1) is None


def test_service_dying_on_start_raises_with_log_tail(tmp_path: Path) -> None:
    pid_file, log = tmp_path / "svc.pid", tmp_path / "svc.log"
    argv = ["sh", "-c", "echo 'FATAL: cannot bind port'; exit 3"]
    pid = start_detached(argv, cwd=tmp_path, log_file=log, pid_file=pid_file)
    with pytest.raises(StackError, match=r"svc exited during start(.|\n)*FATAL: cannot bind"):
        wait_until_answering(
            lambda: False, pid=pid, name="svc", log_file=log, timeout=30, interval=0.05
        )
