"""A barrier in ingestion's commit, so a fault test kills a run at a point it chooses.

The test writes `<dir>/point` ("before_commit N" or "after_commit N": this process's Nth
commit of a bronze table). A process reaching that point writes `<dir>/arrived-<pid>` and
waits there until the test kills it, or writes `<dir>/release-<pid>`. No point file: every
commit passes. Installed by `barrier_definitions.py` (the project's definitions plus this),
which the Dagster CLI and `dagster dev` load instead of `definitions.py` in these tests.
"""

import os
import time
from pathlib import Path
from typing import Any

from lakehouse import ingest as ingest_module

DIR_ENV = "LAKEHOUSE_TEST_BARRIER_DIR"
POINTS = ("before_commit", "after_commit")


def arm(folder: Path, point: str, nth: int) -> None:
    """The next process to reach its `nth` bronze commit at `point` stops there."""
    assert point in POINTS, point
    (folder / "point").write_text(f"{point} {nth}")


def disarm(folder: Path) -> None:
    """Every commit passes from now on."""
    (folder / "point").unlink(missing_ok=True)


def arrivals(folder: Path) -> dict[int, Path]:
    """{pid: file} of the processes waiting at the barrier (or killed there)."""
    return {int(p.name.split("-", 1)[1]): p for p in folder.glob("arrived-*")}


def _wait_if_armed(folder: Path, point: str, commits: int) -> None:
    try:
        armed_point, nth = (folder / "point").read_text().split()
    except FileNotFoundError:
        return
    if armed_point != point or int(nth) != commits:
        return
    pid = os.getpid()
    (folder / f"arrived-{pid}").write_text(point)
    while not (folder / f"release-{pid}").exists():
        time.sleep(0.05)


def install() -> None:
    """Wrap ingestion's commit when the environment names a barrier folder."""
    folder = os.environ.get(DIR_ENV)
    if not folder:
        return
    where = Path(folder)
    # Fails loudly (AttributeError) if ingestion stops committing through this name.
    real_commit = ingest_module.commit_batch
    commits = {"n": 0}

    def commit_at_barrier(*args: Any, **kwargs: Any) -> Any:
        # Ingestion commits bronze rows through this name (dead letters through their own).
        commits["n"] += 1
        _wait_if_armed(where, "before_commit", commits["n"])
        outcome = real_commit(*args, **kwargs)
        _wait_if_armed(where, "after_commit", commits["n"])
        return outcome

    ingest_module.commit_batch = commit_at_barrier  # type: ignore[assignment]
