"""Every run of ours beats a heartbeat into its event log while a step runs, so that
`sensors/run_health.py` can tell a live run from a dead one (docs/self-healing.md)."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dagster as dg

from lakehouse.heartbeat import beating
from lakehouse.settings import Settings

HEARTBEAT = "heartbeat"
#: On every run that beats: only such runs are ever failed for being silent.
HEARTBEAT_TAG = {"lakehouse/heartbeat": "on"}


@contextmanager
def heartbeat(
    context: dg.AssetExecutionContext, settings: Settings, tags: Mapping[str, str] | None = None
) -> Iterator[None]:
    """A debug event every `settings.run_heartbeat_seconds` until the block ends.

    The run is first tagged as beating, plus `tags` it lacks (a run started from the CLI or
    the UI then counts as its stream's run, as a sensor's does).
    """
    wanted = {**HEARTBEAT_TAG, **(tags or {})}
    missing = {k: v for k, v in wanted.items() if context.run.tags.get(k) != v}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)
    with beating(settings.run_heartbeat_seconds, lambda: context.log.debug(HEARTBEAT)):
        yield
