"""Run one job at a time on a background thread, in order, so the caller can prepare the next.

Ingestion chains three of them (decode → write files → commit), each job submitting the next
stage's. `submit` first waits for the previous job, so at most one job runs per stage and none
queues (memory: a batch per stage, plus one waiting at each hand-over), jobs never overlap or
reorder, and no job starts after one failed; stages of one pipeline may share `failed`. A
failure is re-raised, unchanged, by the next `submit` or by `wait`; `failed` is set as soon as
it happens, for the caller to stop early. Leaving the `with` block waits for the running job
and ends the thread.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any


class Background:
    """One background thread running submitted jobs strictly one after another."""

    def __init__(self, name: str, failed: threading.Event | None = None) -> None:
        """`failed` may be shared by several stages of one pipeline: set when any fails."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._running: Future[None] | None = None
        self.failed = failed if failed is not None else threading.Event()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Start `job(*args)` once the previous job has succeeded (else raise its error)."""
        self.wait()
        running = self._executor.submit(job, *args)
        running.add_done_callback(self._note_failure)
        self._running = running

    def wait(self) -> None:
        """Wait for the running job; raise its exception, if any, with its own type."""
        running, self._running = self._running, None
        if running is not None:
            running.result()

    def _note_failure(self, done: Future[None]) -> None:
        if done.exception() is not None:
            self.failed.set()

    def __enter__(self) -> "Background":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._executor.shutdown(wait=True)
