"""Runs one silver pass in its own process for the fault tests (spec, window and home from
the environment).

LAKEHOUSE_TEST_KILL_AT=computed|committed makes the process SIGKILL itself at that seam of
the pass (`run_silver_pass(hook=...)`): after the windows are computed and before the
commit, or after the silver commit and before the late events are appended.
"""

import json
import os
import signal
import sys
from datetime import datetime

from lakehouse.config import StreamSpec
from lakehouse.settings import Settings
from lakehouse.windowing.silver import run_silver_pass

spec = StreamSpec.model_validate_json(os.environ["LAKEHOUSE_TEST_SPEC"])
window = os.environ["LAKEHOUSE_TEST_WINDOW"]
kill_at = os.environ.get("LAKEHOUSE_TEST_KILL_AT")
now = datetime.fromisoformat(os.environ["LAKEHOUSE_TEST_NOW"])


def hook(stage: str) -> None:
    if stage == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


report = run_silver_pass(Settings(), spec, window, now=now, hook=hook)
print(json.dumps(report.as_metadata(), default=str))
sys.exit(0)
