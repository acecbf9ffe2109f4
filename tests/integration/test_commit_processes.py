"""Real processes against one SQLite catalog: concurrent writers and SIGKILLs mid-commit.

Run as a script this file is the worker (`python test_commit_processes.py '<json>'`), so the
children are plain processes the test can kill at any instant.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.serializers import FromInputFile

from lakehouse.iceberg.catalog import ensure_table
from lakehouse.iceberg.commit import commit_batch, committed_offsets, offsets_key

TABLE, TOPIC = "bronze.events", "events"
PARTITIONS = (0, 1, 2)
PROPS = {"write.metadata.previous-versions-max": "100000"}  # keep the whole history to walk


def catalog_at(root: Path) -> SqlCatalog:
    return SqlCatalog(
        "lakehouse", uri=f"sqlite:///{root}/catalog.db", warehouse=(root / "wh").as_uri()
    )


def rows_for(ranges: dict[int, tuple[int, int]]) -> pa.Table:
    parts, offsets = [], []
    for p, (s, e) in sorted(ranges.items()):
        parts += [p] * (e - s)
        offsets += list(range(s, e))
    return pa.table(
        {
            "id": [f"{p}-{o}" for p, o in zip(parts, offsets, strict=True)],
            "payload": [o * 3 for o in offsets],
            "_kafka_partition": pa.array(parts, pa.int32()),
            "_kafka_offset": pa.array(offsets, pa.int64()),
        }
    )


def commit_ranges(catalog: SqlCatalog, ranges: dict[int, tuple[int, int]]) -> Any:
    return commit_batch(
        catalog,
        TABLE,
        TOPIC,
        rows_for(ranges),
        {p: s for p, (s, _) in ranges.items()},
        {p: e for p, (_, e) in ranges.items()},
        max_attempts=50,
    )


# ---------------------------------------------------------------- worker (child process)


def run_writer(root: Path, end: int, seed: int, max_batch: int, overlap: int) -> dict[str, Any]:
    """Commit overlapping random batches until every partition reaches `end`."""
    rng = random.Random(seed)
    catalog = catalog_at(root)
    stats: dict[str, Any] = {"commits": 0, "noops": 0, "attempts": 0, "conflicts": 0}
    latencies: list[float] = []
    while True:
        committed = committed_offsets(catalog.load_table(TABLE), TOPIC)
        todo = [p for p in PARTITIONS if committed.get(p, 0) < end]
        if not todo:
            break
        ranges = {}
        for p in rng.sample(todo, rng.randint(1, len(todo))):
            start = max(0, committed.get(p, 0) - rng.randint(0, overlap))
            ranges[p] = (start, min(end, start + rng.randint(1, max_batch)))
        outcome = commit_ranges(catalog, ranges)
        stats["attempts"] += outcome.attempts
        stats["conflicts"] += outcome.conflicts
        if outcome.already_committed:
            stats["noops"] += 1
        else:
            stats["commits"] += 1
            latencies.append(outcome.seconds)
    stats["latencies"] = latencies
    return stats


def arm_kill(point: str) -> None:
    """SIGKILL this process at `point` of the next commit_batch."""

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    from pyiceberg.table import Transaction

    if point == "before-append":
        Transaction.append = lambda *a, **k: die()  # type: ignore[method-assign]
    elif point == "files-written":  # data files and manifests written, catalog untouched
        SqlCatalog.commit_table = lambda *a, **k: die()  # type: ignore[method-assign]
    elif point == "metadata-written":  # new metadata.json written, pointer not swapped
        original_write = SqlCatalog._write_metadata

        def write_then_die(*a: Any, **k: Any) -> None:
            original_write(*a, **k)
            die()

        SqlCatalog._write_metadata = staticmethod(write_then_die)  # type: ignore[method-assign,assignment]
    elif point == "after-swap":
        original_commit = SqlCatalog.commit_table

        def commit_then_die(*a: Any, **k: Any) -> Any:
            original_commit(*a, **k)
            die()

        SqlCatalog.commit_table = commit_then_die  # type: ignore[method-assign]
    else:
        raise ValueError(point)


def worker(args: dict[str, Any]) -> None:
    root = Path(args["root"])
    if args["mode"] == "writer":
        stats = run_writer(root, args["end"], args["seed"], args["max_batch"], args["overlap"])
        Path(args["out"]).write_text(json.dumps(stats))
    elif args["mode"] == "kill-at":
        arm_kill(args["point"])
        commit_ranges(catalog_at(root), {int(p): tuple(r) for p, r in args["ranges"].items()})
        raise SystemExit(3)  # the kill point was never reached


def spawn(args: dict[str, Any]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, json.dumps(args)])


# ---------------------------------------------------------------- the oracle


def check_exactly_once(root: Path, end: int) -> dict[str, int]:
    """Every (partition, offset) below `end` once; offsets monotonic; no file added twice."""
    catalog = catalog_at(root)  # a fresh reader
    table = catalog.load_table(TABLE)
    got = Counter(table.scan().to_arrow()["id"].to_pylist())
    expected = {f"{p}-{o}" for p in PARTITIONS for o in range(end)}
    assert {k for k, n in got.items() if n > 1} == set(), "duplicates"
    assert set(got) == expected, f"missing {sorted(expected - set(got))[:10]}"
    assert committed_offsets(table, TOPIC) == {p: end for p in PARTITIONS}

    # Offsets never go backwards across the metadata history.
    history = [entry.metadata_file for entry in table.metadata.metadata_log]
    history.append(table.metadata_location)
    seen: dict[int, int] = {}
    for location in history:
        metadata = FromInputFile.table_metadata(table.io.new_input(location))
        raw = metadata.properties.get(offsets_key(TOPIC))
        for p, o in (json.loads(raw) if raw else {}).items():
            assert o >= seen.get(int(p), 0), f"offsets went back at {location}"
            seen[int(p)] = o

    # No data file added by two snapshots; added-records adds up to the rows.
    added: Counter[str] = Counter()
    records = 0
    for snapshot in table.metadata.snapshots:
        records += int(snapshot.summary.get("added-records") or 0) if snapshot.summary else 0
        for manifest in snapshot.manifests(table.io):
            if manifest.added_snapshot_id != snapshot.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                if entry.status == ManifestEntryStatus.ADDED:
                    added[entry.data_file.file_path] += 1
    assert [f for f, n in added.items() if n > 1] == []
    assert records == len(expected)
    return {"snapshots": len(table.metadata.snapshots), "metadata_versions": len(history)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ensure_table(catalog_at(tmp_path), TABLE, rows_for({0: (0, 1)}).schema, (), PROPS)
    return tmp_path


# ---------------------------------------------------------------- tests


@pytest.mark.slow
def test_two_processes_overlapping_ranges_exactly_once(root: Path) -> None:
    end = 400
    outs = [root / f"w{i}.json" for i in range(2)]
    args = {"mode": "writer", "root": str(root), "end": end, "max_batch": 25, "overlap": 15}
    procs = [spawn({**args, "seed": i, "out": str(out)}) for i, out in enumerate(outs)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    history = check_exactly_once(root, end)
    stats = [json.loads(out.read_text()) for out in outs]
    attempts = sum(s["attempts"] for s in stats)
    conflicts = sum(s["conflicts"] for s in stats)
    latencies = sorted(x for s in stats for x in s["latencies"])
    print(
        f"\ncommits={sum(s['commits'] for s in stats)} noops={sum(s['noops'] for s in stats)} "
        f"attempts={attempts} conflicts={conflicts} ({conflicts / attempts:.0%}) "
        f"p50={latencies[len(latencies) // 2] * 1000:.0f}ms "
        f"p95={latencies[int(len(latencies) * 0.95)] * 1000:.0f}ms {history}"
    )
    assert all(s["commits"] > 0 for s in stats)  # both really wrote


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["before-append", "files-written", "metadata-written", "after-swap"]
)
def test_kill_at_each_point_of_the_commit_then_retry(root: Path, point: str) -> None:
    catalog = catalog_at(root)
    commit_ranges(catalog, {0: (0, 10), 1: (0, 10), 2: (0, 10)})
    ranges = {"0": [10, 20], "1": [5, 20], "2": [10, 20]}
    proc = spawn({"mode": "kill-at", "root": str(root), "point": point, "ranges": ranges})
    assert proc.wait(timeout=60) == -signal.SIGKILL
    table = catalog.load_table(TABLE)  # the table still loads
    expected_before = 20 if point == "after-swap" else 10
    assert committed_offsets(table, TOPIC) == {p: expected_before for p in PARTITIONS}
    # The retry (a new run over the same range) commits exactly what is missing.
    outcome = commit_ranges(catalog, {int(p): tuple(r) for p, r in ranges.items()})
    assert outcome.already_committed == (point == "after-swap")
    check_exactly_once(root, 20)


@pytest.mark.slow
def test_writer_killed_at_random_instants_then_finishes(root: Path) -> None:
    end, rng = 300, random.Random(7)
    args = {"mode": "writer", "root": str(root), "end": end, "max_batch": 20, "overlap": 10}
    kills = 0
    for round_ in range(8):
        proc = spawn({**args, "seed": round_, "out": str(root / "w.json")})
        time.sleep(rng.uniform(0.6, 2.0))  # imports take ~0.5 s; then it commits
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        catalog_at(root).load_table(TABLE)  # loads after every kill
    proc = spawn({**args, "seed": 99, "out": str(root / "w.json")})
    assert proc.wait(timeout=300) == 0
    assert kills >= 3
    check_exactly_once(root, end)


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
