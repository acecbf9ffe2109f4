"""Compaction racing a separate ingesting process (RELIABILITY scenario 12)."""

import json
import multiprocessing
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.transforms import DayTransform, IdentityTransform

from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.compare_and_set import cas_transaction
from lakehouse.iceberg.maintenance import compact, expire_snapshots

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("kind", pa.string()),
    ]
)
KEY = "lakehouse.offsets.clicks"
BATCHES, SIZE = 40, 50
PAUSE = 0.2  # between micro-batches; real ingest commits every few seconds at most


def _catalog(root: str) -> SqlCatalog:
    return SqlCatalog("race", uri=f"sqlite:///{root}/catalog.db", warehouse=f"file://{root}/wh")


def _batch(start: int) -> pa.Table:
    ids = list(range(start, start + SIZE))
    return pa.table(
        {
            "id": ids,
            "ts": [1_740_787_200_000_000 + i * 60_000_000 for i in ids],
            "kind": [("view", "click", "buy")[i % 3] for i in ids],
        },
        schema=SCHEMA,
    )


def _ingest_loop(root: str) -> None:
    """The ingest protocol in miniature: commit rows + next offset; on a lost race reload,
    re-read the committed offset and commit only what is not there yet."""
    catalog = _catalog(root)
    while True:
        table = catalog.load_table("bronze.race")
        done = json.loads(table.properties.get(KEY, '{"0": 0}'))["0"]
        if done >= BATCHES * SIZE:
            return
        try:
            tx = cas_transaction(table)
            tx.append(_batch(done))
            tx.set_properties({KEY: json.dumps({"0": done + SIZE})})
            tx.commit_transaction()
        except CommitFailedException:
            continue
        time.sleep(PAUSE)


@pytest.mark.slow
def test_compaction_racing_an_ingesting_process_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    catalog = _catalog(str(tmp_path))
    catalog.create_namespace("bronze")
    table = catalog.create_table("bronze.race", schema=SCHEMA)
    with table.update_spec() as spec:
        spec.add_field("ts", DayTransform(), "ts_day")
        spec.add_field("kind", IdentityTransform(), "kind")

    writer = multiprocessing.get_context("spawn").Process(
        target=_ingest_loop, args=(str(tmp_path),)
    )
    writer.start()
    compactions = conflicts = 0
    deadline = time.monotonic() + 300
    while writer.is_alive() and time.monotonic() < deadline:
        try:
            report = compact(
                lambda: catalog.load_table("bronze.race"),
                target_file_size_bytes=1 << 20,
                min_manifests_to_merge=4,
                max_attempts=10,
            )
            compactions += report.snapshot_id != -1
        except CommitConflictError:
            conflicts += 1
    writer.join(timeout=60)
    assert writer.exitcode == 0
    final = compact(catalog.load_table("bronze.race"), target_file_size_bytes=1 << 20)
    compactions += final.snapshot_id != -1

    table = catalog.load_table("bronze.race")
    ids = table.scan().to_arrow().column("id").to_pylist()
    assert sorted(ids) == list(range(BATCHES * SIZE))  # every row exactly once
    assert json.loads(table.properties[KEY]) == {"0": BATCHES * SIZE}
    assert compactions >= 3, (compactions, conflicts)
    expire_snapshots(table, older_than=timedelta(0), retain_last=1)
    table = catalog.load_table("bronze.race")
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(BATCHES * SIZE))
    assert json.loads(table.properties[KEY]) == {"0": BATCHES * SIZE}
