"""Maintenance on tables the real ingest wrote: compaction, snapshot expiry and orphan removal
keep the data, the offsets and exactly-once intact, directly, through Dagster, and while a
separate process ingests."""

import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import dagster as dg
import polars as pl
import pytest

from assets.maintenance import maintenance_assets
from assets.resources import LakehouseResource
from lakehouse.audit import check_offset_chain
from lakehouse.config import BatchLimits, Maintenance
from lakehouse.demo.producer import produce
from lakehouse.errors import CommitConflictError
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.iceberg.maintenance import compact, expire_snapshots, remove_orphan_files
from lakehouse.iceberg.maintenance_plan import MaintainedTable
from lakehouse.settings import Settings
from tests.integration.ingest_helpers import (
    assert_exactly_once,
    fresh_spec,
    ingest_once,
    run_worker,
    worker_result,
)

pytestmark = pytest.mark.integration

TARGET = 128 * 1024 * 1024


def local_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def data_files(table, snapshot_id: int | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(t.file.file_path for t in table.scan(snapshot_id=snapshot_id).plan_files())


def plant_orphans(table) -> list[Path]:  # type: ignore[no-untyped-def]
    """Files under the table location no metadata references (what a lost race leaves)."""
    root = local_path(table.location())
    planted = [
        root / "data" / f"00000-0-orphan-{uuid.uuid4().hex}.parquet",
        root / "metadata" / f"99999-{uuid.uuid4()}.metadata.json",
    ]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not referenced by anything")
    return planted


def event_ids(table, snapshot_id: int | None = None) -> list[str]:  # type: ignore[no-untyped-def]
    arrow = table.scan(snapshot_id=snapshot_id, selected_fields=("event_id",)).to_arrow()
    return sorted(arrow["event_id"].to_pylist())


def test_compact_expire_orphans_then_ingest_more_exactly_once(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=40))
    first = produce(
        stack,
        "clicks",
        count=600,
        topic=spec.topic,
        malformed_fraction=0.03,
        seed=31,
        progress=False,
        collect_ids=True,
    )
    assert first.ok
    ingested = ingest_once(stack, spec)
    assert ingested.batches >= 12
    catalog = load_catalog(stack)

    def loader():  # type: ignore[no-untyped-def]
        return catalog.load_table(spec.table)

    table = loader()
    offsets = committed_offsets(table, spec.topic)
    ids_before = event_ids(table)
    assert ids_before == sorted(first.ids)
    small_files = data_files(table)
    assert len(small_files) >= 12

    compaction = compact(loader, target_file_size_bytes=TARGET)
    table = loader()
    assert compaction.files_before == len(small_files)
    assert compaction.files_after < compaction.files_before
    assert compaction.rows_rewritten == len(ids_before)
    assert len(data_files(table)) == compaction.files_after
    assert table.current_snapshot().summary.operation.value == "replace"
    assert event_ids(table) == ids_before
    assert committed_offsets(table, spec.topic) == offsets

    snapshots_before = len(table.snapshots())
    expiry = expire_snapshots(loader, older_than=timedelta(0), retain_last=2)
    table = loader()
    assert expiry.snapshots_expired == snapshots_before - 2
    assert len(table.snapshots()) == 2
    assert committed_offsets(table, spec.topic) == offsets
    assert expiry.delete_failures == 0

    planted = plant_orphans(table)
    orphans = remove_orphan_files(loader, older_than=timedelta(0))
    table = loader()
    assert orphans.orphans_deleted >= len(planted) and orphans.delete_failures == 0
    assert not any(path.exists() for path in planted)
    assert committed_offsets(table, spec.topic) == offsets

    # Every remaining snapshot still reads (its files were kept); the newest is the data.
    for snapshot in table.snapshots():
        assert event_ids(table, snapshot.snapshot_id) == ids_before
        assert all(local_path(p).exists() for p in data_files(table, snapshot.snapshot_id))
    # The small files only the expired snapshots referenced are gone from disk.
    live = {p for s in table.snapshots() for p in data_files(table, s.snapshot_id)}
    assert all(not local_path(p).exists() for p in set(small_files) - live)
    assert check_offset_chain(table, spec.topic).ok

    # The stream goes on from the same offsets: nothing re-read, nothing skipped.
    second = produce(
        stack,
        "clicks",
        count=300,
        topic=spec.topic,
        malformed_fraction=0.03,
        seed=32,
        progress=False,
        collect_ids=True,
    )
    more = ingest_once(stack, spec)
    assert more.records_written == second.delivered
    assert_exactly_once(stack, spec, set(first.ids) | set(second.ids))
    table = load_catalog(stack).load_table(spec.table)
    newest = table.current_snapshot()
    assert newest is not None and event_ids(table, newest.snapshot_id) == sorted(
        set(first.ids) | set(second.ids)
    )
    chain = check_offset_chain(table, spec.topic)
    assert chain.ok and chain.commits >= 1, chain.problems


def materialize(table: MaintainedTable, job: str) -> dict[str, object]:
    """Materialize one maintenance asset of `table` through Dagster; its metadata."""
    [asset] = [a for a in maintenance_assets(table) if a.key.path[-1] == job]
    result = dg.materialize(
        [asset],
        resources={"lakehouse": LakehouseResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    [materialization] = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    assert materialization.asset_key == dg.AssetKey(["maintenance", table.name, job])
    return {k: v.value for k, v in materialization.metadata.items()}


def test_maintenance_assets_through_dagster(stack: Settings) -> None:
    spec = fresh_spec(batch=BatchLimits(max_records=50))
    report = produce(
        stack, "payments", count=500, topic=spec.topic, seed=41, progress=False, collect_ids=True
    )
    knobs = Maintenance(
        target_file_size_bytes=TARGET,
        snapshot_retention_days=1e-9,  # everything is old enough
        min_snapshots_to_keep=1,
        orphan_min_age_days=1e-9,
    )
    maintained = MaintainedTable(spec.name, spec.table, knobs)

    # Before the table exists the assets succeed and say so.
    assert "does not exist" in str(materialize(maintained, "compaction")["skipped"])

    ingest_once(stack, spec)
    catalog = load_catalog(stack)
    table = catalog.load_table(spec.table)
    offsets = committed_offsets(table, spec.topic)
    files = len(data_files(table))
    snapshots = len(table.snapshots())
    assert files >= 10

    compaction = materialize(maintained, "compaction")
    assert compaction["files_before"] == files
    assert compaction["files_before"] > compaction["files_after"] >= 1  # type: ignore[operator]
    assert compaction["rows_rewritten"] == report.delivered

    # compaction adds its replace, and a manifest rewrite when the appends left many manifests
    added = 1 + (compaction["manifest_rewrite_snapshot_id"] != -1)
    expiry = materialize(maintained, "snapshot_expiry")
    assert expiry["snapshots_before"] == snapshots + added
    assert expiry["snapshots_after"] == 1
    assert expiry["snapshots_expired"] == snapshots + added - 1
    # the small files compaction replaced, referenced by expired snapshots only
    assert expiry["data_files_deleted"] == compaction["files_rewritten"]
    assert expiry["dry_run"] == 0

    table = catalog.load_table(spec.table)
    planted = plant_orphans(table)
    orphans = materialize(maintained, "orphan_files")
    assert orphans["orphans_deleted"] == orphans["orphans_found"] == len(planted)
    assert not any(path.exists() for path in planted)

    table = catalog.load_table(spec.table)
    assert committed_offsets(table, spec.topic) == offsets
    assert len(data_files(table)) == compaction["files_after"]
    assert_exactly_once(stack, spec, set(report.ids))


@pytest.mark.slow
def test_compaction_while_another_process_ingests(stack: Settings) -> None:
    spec = fresh_spec("readings", batch=BatchLimits(max_records=150))
    report = produce(
        stack,
        "readings",
        count=6000,
        topic=spec.topic,
        malformed_fraction=0.01,
        seed=51,
        progress=False,
        collect_ids=True,
    )
    # Some small files first, so the very first compaction has work to do.
    seeded = ingest_once(stack, spec, explicit_ranges={p: (0, 20) for p in range(6)})
    catalog = load_catalog(stack)

    def loader():  # type: ignore[no-untyped-def]
        return catalog.load_table(spec.table)

    worker = run_worker(spec)
    compacted, gave_up = [], 0
    while worker.poll() is None:
        try:
            result = compact(loader, target_file_size_bytes=TARGET, min_input_files=2)
        except CommitConflictError:
            gave_up += 1  # allowed under back-to-back commits: nothing committed
            continue
        if result.files_rewritten:
            compacted.append(result.snapshot_id)
        time.sleep(0.05)
    outcome = worker_result(worker)
    assert outcome["records_written"] == report.delivered - seeded.records_written

    table = loader()
    # Compactions really interleaved with the worker's commits: some ingest commit's parent
    # chain passes through a compaction snapshot.
    by_id = {s.snapshot_id: s for s in table.snapshots()}
    lineage = []
    current = table.current_snapshot()
    while current is not None:
        lineage.append(current)
        current = by_id.get(current.parent_snapshot_id)  # type: ignore[arg-type]
    lineage.reverse()
    kinds = [s.summary.operation.value for s in lineage]
    first_replace = kinds.index("replace") if "replace" in kinds else len(kinds)
    assert len(compacted) >= 3, f"{len(compacted)} compactions during the run ({gave_up} gave up)"
    assert kinds[first_replace:].count("append") >= 3, kinds
    assert set(compacted) <= {s.snapshot_id for s in lineage}  # every compaction is on main
    assert_exactly_once(stack, spec, set(report.ids))
    rows = pl.from_arrow(table.scan(selected_fields=("event_id",)).to_arrow())
    assert rows.height == len(report.ids)
