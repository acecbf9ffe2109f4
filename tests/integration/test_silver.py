"""The silver pass against a real catalog: idle partitions, far-future events, faults
(SIGKILL at either side of the commit, two passes at once), bronze maintenance and schema
change between passes, declarations that do not fit the tables. Interleavings are forced
through the pass's hook; nothing waits on a clock."""

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog

from lakehouse.errors import ConfigError
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.iceberg.commit import commit_batch
from lakehouse.iceberg.maintenance import compact, expire_snapshots
from lakehouse.settings import Settings
from lakehouse.windowing.silver import run_silver_pass, silver_table_name
from lakehouse.windowing.state import SilverState
from tests.integration.silver_helpers import (
    CLICK_SCHEMA,
    Bronze,
    Click,
    assert_silver_equals_model,
    at,
    click_spec,
    count_model,
    late_frame,
    silver_frame,
    us,
)

ROOT = Path(__file__).resolve().parents[2]
COUNT = {"tumbling": "1m", "group_by": ["page"], "aggregate": {"n": "count(*)"}}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Catalog]]:
    settings = Settings(home=tmp_path_factory.mktemp("silver"))
    yield settings, load_catalog(settings)


def _on_time(partition: int, seconds: range, page: str = "/") -> list[Click]:
    return [Click(partition, at(s), at(s), page=page) for s in seconds]


def _pass(lake: tuple[Settings, Catalog], spec, window, now, **kwargs):  # type: ignore[no-untyped-def]
    settings, catalog = lake
    return run_silver_pass(settings, spec, window, catalog=catalog, now=now, **kwargs)


def _feed(lake, spec, window, model, bronze, batch, now):  # type: ignore[no-untyped-def]
    placed = bronze.append(batch)
    report = _pass(lake, spec, window, now)
    model.run_pass(placed, us(now))
    return report


def test_an_idle_partition_stops_holding_windows_open(lake: tuple[Settings, Catalog]) -> None:
    spec = click_spec({"w": COUNT}, max_out_of_orderness="10s", idle_partition_timeout="60s")
    bronze, model = Bronze(lake[1], spec), count_model(spec, "w")
    _feed(
        lake,
        spec,
        "w",
        model,
        bronze,
        _on_time(0, range(0, 51, 10)) + _on_time(1, range(5, 51, 15)),
        at(50),
    )
    # Partition 1 goes silent. 40 s later it still holds the watermark at 50 - 10 s.
    report = _feed(lake, spec, "w", model, bronze, _on_time(0, range(60, 91, 10)), at(90))
    assert report.watermark == at(40) and report.idle_partitions == []
    assert silver_frame(lake[1], spec, "w").height == 0
    # 80 s after its last record it is idle: the watermark follows partition 0 alone.
    report = _feed(lake, spec, "w", model, bronze, _on_time(0, range(100, 131, 10)), at(130))
    assert report.idle_partitions == [1]
    assert report.watermark == at(120)
    rows = assert_silver_equals_model(lake[1], spec, "w", model, ["page"])
    assert {(k[0], r["n"]) for k, r in rows.items()} == {(us(at(0)), 10), (us(at(60)), 6)}


def test_a_far_future_event_is_counted_and_makes_nothing_late(
    lake: tuple[Settings, Catalog],
) -> None:
    spec = click_spec({"w": COUNT}, max_future_skew="1h")
    bronze, model = Bronze(lake[1], spec), count_model(spec, "w")
    future = Click(1, at(10 * 3600), at(30), page="/clock-wrong")  # 10 h ahead of Kafka
    report = _feed(lake, spec, "w", model, bronze, [*_on_time(0, range(0, 51, 10)), future], at(50))
    assert report.future_events == 1
    assert report.watermark == at(40)  # not 10 h - 10 s: the future event does not count
    report = _feed(lake, spec, "w", model, bronze, _on_time(0, range(55, 131, 5)), at(130))
    assert report.late_events == 0 and report.future_events == 0
    assert late_frame(lake[1], spec, "w").height == 0
    rows = assert_silver_equals_model(lake[1], spec, "w", model, ["page"])
    assert (us(at(0)), "/") in rows and not any(k[1] == "/clock-wrong" for k in rows)


def _late_scenario(lake: tuple[Settings, Catalog], spec):  # type: ignore[no-untyped-def]
    """Two windows closed; then a batch with late events for the first and new on-time
    events, committed to bronze but not yet windowed."""
    bronze, model = Bronze(lake[1], spec), count_model(spec, "w")
    _feed(lake, spec, "w", model, bronze, _on_time(0, range(0, 130, 10)), at(130))
    late = [Click(0, at(s), at(135), page="/late") for s in (5, 15, 25)]
    placed = bronze.append([*late, *_on_time(0, range(140, 200, 10))])
    return bronze, model, placed


def _worker(spec, kill_at: str | None, now) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "LAKEHOUSE_TEST_SPEC": spec.model_dump_json(),
        "LAKEHOUSE_TEST_WINDOW": "w",
        "LAKEHOUSE_TEST_NOW": now.isoformat(),
    }
    if kill_at:
        env["LAKEHOUSE_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, str(Path(__file__).with_name("silver_worker.py"))],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.slow
def test_sigkill_on_either_side_of_the_commit_then_a_rerun(
    lake: tuple[Settings, Catalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(lake[0].home))
    spec = click_spec({"w": COUNT})
    _, model, placed = _late_scenario(lake, spec)
    table = silver_table_name(spec, "w")
    before = SilverState.from_properties(lake[1].load_table(table).properties)

    killed = _worker(spec, "computed", at(200))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert SilverState.from_properties(lake[1].load_table(table).properties) == before

    killed = _worker(spec, "committed", at(200))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    after = SilverState.from_properties(lake[1].load_table(table).properties)
    assert after.position != before.position and after.outbox is not None
    assert late_frame(lake[1], spec, "w").height == 0  # the late rows wait in the outbox

    rerun = _worker(spec, None, at(200))
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    again = _worker(spec, None, at(200))
    assert again.returncode == 0
    model.run_pass(placed, us(at(200)))
    rows = assert_silver_equals_model(lake[1], spec, "w", model, ["page"])
    assert rows[(us(at(0)), "/late")]["n"] == 3 and rows[(us(at(0)), "/late")]["revision"] == 1
    assert late_frame(lake[1], spec, "w").height == 3


def test_two_passes_at_once_count_everything_once(lake: tuple[Settings, Catalog]) -> None:
    spec = click_spec({"w": COUNT})
    _, model, placed = _late_scenario(lake, spec)
    settings = lake[0]
    computed, released = threading.Event(), threading.Event()
    reports = []

    def hold(stage: str) -> None:
        if stage == "computed" and not computed.is_set():
            computed.set()
            released.wait(120)

    def first() -> None:  # computes, then waits until the second pass has committed
        catalog = load_catalog(settings)
        reports.append(
            run_silver_pass(settings, spec, "w", catalog=catalog, now=at(200), hook=hold)
        )

    thread = threading.Thread(target=first)
    thread.start()
    assert computed.wait(120)
    second = run_silver_pass(settings, spec, "w", catalog=load_catalog(settings), now=at(200))
    released.set()
    thread.join(120)
    assert second.committed and second.late_events == 3
    [loser] = reports
    assert loser.conflicts == 1 and not loser.committed  # lost the race, found nothing new
    model.run_pass(placed, us(at(200)))
    assert_silver_equals_model(lake[1], spec, "w", model, ["page"])


def test_bronze_compaction_and_expiry_between_passes(lake: tuple[Settings, Catalog]) -> None:
    spec = click_spec({"w": COUNT})
    bronze, model = Bronze(lake[1], spec), count_model(spec, "w")
    for start in range(0, 120, 20):  # six small bronze commits, windowed as they come
        _feed(
            lake,
            spec,
            "w",
            model,
            bronze,
            _on_time(start % 2, range(start, start + 20, 5)),
            at(start + 20),
        )
    loader = lambda: lake[1].load_table(spec.table)  # noqa: E731
    assert compact(loader, target_file_size_bytes=64 * 1024 * 1024).files_rewritten > 1
    assert expire_snapshots(loader, older_than=timedelta(0), retain_last=1).snapshots_expired > 0
    late = [Click(0, at(s), at(150), page="/late") for s in (1, 61)]
    _feed(lake, spec, "w", model, bronze, [*late, *_on_time(1, range(120, 181, 10))], at(180))
    _feed(lake, spec, "w", model, bronze, _on_time(0, range(185, 260, 5)), at(260))
    assert_silver_equals_model(lake[1], spec, "w", model, ["page"])


def test_bronze_gaining_a_column_does_not_break_silver(lake: tuple[Settings, Catalog]) -> None:
    spec = click_spec(
        {"w": {**COUNT, "aggregate": {"n": "count(*)", "users": "count(distinct user_id)"}}}
    )
    bronze = Bronze(lake[1], spec)
    bronze.append(_on_time(0, range(0, 60, 10)))
    _pass(lake, spec, "w", at(60))
    v2 = CLICK_SCHEMA.append(pa.field("user_location", pa.string()))  # the clicks v2 schema
    rows = pa.Table.from_pylist(
        [
            {
                "event_id": f"v2-{s}",
                "event_time": at(s),
                "user_id": f"u{s}",
                "page": "/",
                "action": "view",
                "user_location": "Lisbon",
                "_kafka_topic": spec.topic,
                "_kafka_partition": 0,
                "_kafka_offset": 6 + i,
                "_kafka_timestamp": at(s),
                "_ingested_at": at(s),
            }
            for i, s in enumerate(range(60, 140, 10))
        ],
        schema=v2,
    )
    outcome = commit_batch(lake[1], spec.table, spec.topic, rows, {0: 6}, {0: 14})
    assert outcome.schema_changed
    report = _pass(lake, spec, "w", at(140))
    assert report.rows_read == 8 and report.windows_closed == 2
    got = {
        (r["window_start"], r["n"], r["users"]) for r in silver_frame(lake[1], spec, "w").to_dicts()
    }
    assert got == {(at(0), 6, 1), (at(60), 6, 6)}


def test_a_declaration_that_does_not_fit_bronze_names_stream_window_and_field(
    lake: tuple[Settings, Catalog],
) -> None:
    spec = click_spec({"w": {**COUNT, "group_by": ["pge"]}})
    Bronze(lake[1], spec).append(_on_time(0, range(0, 10, 5)))
    with pytest.raises(
        ConfigError, match=rf"stream '{spec.name}', window 'w', field 'group_by'.*'pge'"
    ):
        _pass(lake, spec, "w", at(10))
    joined = click_spec(
        {"w": {**COUNT, "join": {"table": "reference.nothing", "on": "product_id"}}}
    )
    Bronze(lake[1], joined).append(_on_time(0, range(0, 10, 5)))
    with pytest.raises(ConfigError, match=r"field 'join.table'.*reference.nothing does not exist"):
        _pass(lake, joined, "w", at(10))


def test_a_changed_declaration_is_refused_not_mixed_into_old_rows(
    lake: tuple[Settings, Catalog],
) -> None:
    spec = click_spec({"w": COUNT})
    Bronze(lake[1], spec).append(_on_time(0, range(0, 100, 5)))
    _pass(lake, spec, "w", at(100))
    changed = spec.model_copy(
        update={"windows": {"w": spec.windows["w"].model_copy(update={"tumbling": "2m"})}}
    )
    with pytest.raises(ConfigError, match=r"computed from another declaration"):
        _pass(lake, changed, "w", at(100))
