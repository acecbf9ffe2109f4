"""Background processes by pid file: start detached, find, wait until answering, stop.

A pid file holds `<pid> <create time>`, so a reused pid is never mistaken for ours.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from lakehouse.errors import StackError


def log_tail(log_file: Path, lines: int = 40) -> str:
    """The last lines of a log file ('' if there is none)."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in `pid_file` if that very process still runs; removes a stale file."""
    try:
        pid_text, created_text = pid_file.read_text().split()
        pid, created = int(pid_text), float(created_text)
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return None
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - created) < 1.0 and _alive(process):
            return pid
    except psutil.Error:
        pass
    pid_file.unlink(missing_ok=True)
    return None


def start_detached(
    argv: list[str], *, cwd: Path, log_file: Path, pid_file: Path, env: dict[str, str] | None = None
) -> int:
    """Start `argv` in its own session (and process group), output appended to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        try:
            child = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {argv[0]}: {exc}") from exc
    try:
        created = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess:  # already gone and reaped: the pid file is stale at once
        created = 0.0
    pid_file.write_text(f"{child.pid} {created}\n")
    return child.pid


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise StackError(f"not allowed to signal process group {pid}: {exc}") from exc


def stop(pid_file: Path, timeout: float) -> int | None:
    """Stop the recorded process group: SIGTERM, wait `timeout`, then SIGKILL. Returns the pid."""
    pid = running_pid(pid_file)
    if pid is None:
        return None
    process = psutil.Process(pid)
    _signal_group(pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        _signal_group(pid, signal.SIGKILL)
        try:
            process.wait(10)
        except psutil.TimeoutExpired as exc:
            raise StackError(f"process {pid} survived SIGKILL") from exc
    # Anything else the service left in its group goes too.
    _signal_group(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return pid


def wait_until_answering(
    answering: Callable[[], bool],
    *,
    pid: int,
    name: str,
    log_file: Path,
    timeout: float,
    interval: float = 0.5,
) -> None:
    """Poll `answering` until True; StackError with the log tail if the process dies or hangs."""
    try:
        process: psutil.Process | None = psutil.Process(pid)
    except psutil.NoSuchProcess:
        process = None
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and answering():
            return
        if process is None or not _alive(process):
            raise StackError(
                f"{name} exited during start. Last lines of {log_file}:\n{log_tail(log_file)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{name} (pid {pid}) did not answer within {timeout:.0f} s. "
                f"Last lines of {log_file}:\n{log_tail(log_file)}"
            )
        time.sleep(interval)


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, or None if it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
