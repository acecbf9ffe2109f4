"""A run silent past the deadline is reported failed through the instance; a live one, one
not launched yet and another stream's are left alone."""

import dagster as dg

from assets.heartbeat import HEARTBEAT_TAG
from sensors.run_health import check_runs, last_heard

TAGS = {"lakehouse/stream": "clicks"}
BEATING = {**TAGS, **HEARTBEAT_TAG}


@dg.op
def noop() -> None:
    pass


@dg.job
def ingest_clicks() -> None:
    noop()


def started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    """A run whose worker started and then went silent (as one whose process was killed)."""
    run = instance.create_run_for_job(ingest_clicks, tags=tags)
    instance.report_engine_event("worker up", run)
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name
        ),
    )
    run = instance.get_run_by_id(run.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.STARTED
    return run


def test_a_silent_started_run_is_failed_and_no_longer_in_flight() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        dead = started_run(instance, BEATING)
        silent_other_code = started_run(instance, TAGS)  # no heartbeat tag: never judged
        other_stream = started_run(instance, {"lakehouse/stream": "payments", **HEARTBEAT_TAG})
        waiting = instance.create_run_for_job(ingest_clicks, tags=BEATING)  # not launched yet
        [record] = instance.get_run_records(dg.RunsFilter(run_ids=[dead.run_id]))
        heard = last_heard(instance, record)

        # Within the deadline: both in flight, nothing reported.
        health = check_runs(instance, TAGS, dead_after_seconds=60, now=heard + 59)
        assert {r.run_id for r in health.alive} == {
            dead.run_id,
            waiting.run_id,
            silent_other_code.run_id,
        }
        assert health.dead == []

        # Past it: the started one is failed; the one never launched cannot beat and stays.
        health = check_runs(instance, TAGS, dead_after_seconds=60, now=heard + 61)
        assert {r.run_id for r in health.alive} == {waiting.run_id, silent_other_code.run_id}
        assert [r.run_id for r in health.dead] == [dead.run_id]
        failed = instance.get_run_by_id(dead.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
        messages = [e.message for e in instance.all_logs(dead.run_id) if e.message]
        assert any("No heartbeat" in m for m in messages)
        untouched = instance.get_run_by_id(other_stream.run_id)
        assert untouched is not None and untouched.status == dg.DagsterRunStatus.STARTED


def test_a_heartbeat_keeps_a_run_alive() -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        run = started_run(instance, BEATING)
        [record] = instance.get_run_records(dg.RunsFilter(run_ids=[run.run_id]))
        first = last_heard(instance, record)
        instance.report_engine_event("heartbeat", run)
        beat = last_heard(instance, record)
        assert beat >= first
        assert check_runs(instance, TAGS, dead_after_seconds=60, now=beat + 59).alive
