"""Runs one ingestion in its own process for the fault tests (spec from the environment).

LAKEHOUSE_TEST_KILL_AT=before_commit|after_commit makes the process SIGKILL itself at that
point of its second batch, the way a crashed or OOM-killed run dies.
"""

import json
import os
import resource
import signal
import sys
import uuid

from lakehouse import ingest as ingest_module
from lakehouse.config import StreamSpec
from lakehouse.settings import Settings

spec = StreamSpec.model_validate_json(os.environ["LAKEHOUSE_TEST_SPEC"])
kill_at = os.environ.get("LAKEHOUSE_TEST_KILL_AT")
real_commit = ingest_module.commit_batch
calls = {"n": 0}


def commit_then_maybe_die(catalog, identifier, *args, **kwargs):  # type: ignore[no-untyped-def]
    if identifier == spec.table:
        calls["n"] += 1
        if kill_at == "before_commit" and calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    outcome = real_commit(catalog, identifier, *args, **kwargs)
    if identifier == spec.table and kill_at == "after_commit" and calls["n"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return outcome


ingest_module.commit_batch = commit_then_maybe_die
report = ingest_module.ingest(
    Settings(),
    spec,
    run_id=f"worker-{uuid.uuid4().hex[:8]}",
    dead_letter_table="bronze.dead_letters",
)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# the largest child process: the reader process, if the run started one
reader_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({**report.as_metadata(), "peak_mb": peak_mb, "reader_peak_mb": reader_peak_mb}))
sys.exit(0)
