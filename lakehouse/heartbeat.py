"""A heartbeat: an action repeated on a timer thread while a block of code runs.

A run emits one into its orchestrator's event log so that a watcher can tell a live run from
one whose process died (docs/self-healing.md). The action's failures are swallowed: a beat
that cannot be recorded is a missed beat, never a failed run.
"""

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def beating(every_seconds: float, beat: Callable[[], object]) -> Iterator[None]:
    """Call `beat()` every `every_seconds` on a daemon thread until the block ends."""
    if every_seconds <= 0:
        raise ValueError("every_seconds must be positive")
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_seconds):
            with contextlib.suppress(Exception):
                beat()

    thread = threading.Thread(target=loop, name="lakehouse-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
