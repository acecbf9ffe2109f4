"""Which of our runs are alive: a run whose event log has been silent too long is dead.

Every run of ours beats a heartbeat into its event log (assets/heartbeat.py). The default
run launcher cannot tell that a run worker was killed, so such a run would stay STARTED for
good and block its stream's next runs (the run queue's tag limits, the lag sensor). A sensor
that finds one silent past the deadline reports it failed through the public
`DagsterInstance` API, which frees what it held, and the stream goes on with a new run
(docs/self-healing.md). Runs that do not beat (other code's) are never touched.
"""

import time
from dataclasses import dataclass, field

import dagster as dg

from assets.heartbeat import HEARTBEAT_TAG
from assets.resources import LakehouseResource

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# A launched run emits events; one that never started (queued, or not yet submitted) does not.
LAUNCHED = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}


def last_heard(instance: dg.DagsterInstance, record: dg.RunRecord) -> float:
    """When the run last wrote to its event log (else when it started or was created)."""
    latest = instance.get_records_for_run(record.dagster_run.run_id, limit=1, ascending=False)
    if latest.records:
        return latest.records[0].timestamp
    return record.start_time or record.create_timestamp.timestamp()


def _beats(run: dg.DagsterRun) -> bool:
    return all(run.tags.get(k) == v for k, v in HEARTBEAT_TAG.items())


@dataclass
class RunHealth:
    """The in-flight runs found alive, and those found dead (now reported failed)."""

    alive: list[dg.DagsterRun] = field(default_factory=list)
    dead: list[dg.DagsterRun] = field(default_factory=list)


def check_runs(
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    *,
    dead_after_seconds: float,
    now: float | None = None,
) -> RunHealth:
    """The in-flight runs carrying `tags`; beating ones silent for longer than
    `dead_after_seconds` are reported failed and counted dead."""
    now = time.time() if now is None else now
    health = RunHealth()
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT, tags=tags)):
        run = record.dagster_run
        if run.status in LAUNCHED and _beats(run):
            silent = now - last_heard(instance, record)
            if silent > dead_after_seconds:
                instance.report_run_failed(
                    run,
                    message=(
                        f"No heartbeat for {silent:.0f}s (> {dead_after_seconds:.0f}s): the run's "
                        "process died. Marked failed so that what it held is freed."
                    ),
                )
                health.dead.append(run)
                continue
        health.alive.append(run)
    return health


def dead_runs_sensor() -> dg.SensorDefinition:
    """Fails every beating run that went silent (maintenance runs, runs from the CLI); the lag
    sensors also do it for their own stream on every tick."""

    @dg.sensor(
        name="dead_runs",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks failed any of our runs whose heartbeat stopped (its process died).",
    )
    def _sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SkipReason:
        settings = lakehouse.settings()
        health = check_runs(
            context.instance, HEARTBEAT_TAG, dead_after_seconds=settings.run_dead_after_seconds
        )
        dead = ", ".join(run.run_id for run in health.dead) or "none"
        return dg.SkipReason(f"{len(health.alive)} runs alive; marked failed: {dead}")

    return _sensor
