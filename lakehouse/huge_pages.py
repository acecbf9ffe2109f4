"""Transparent huge pages off while a run ingests (Linux; elsewhere nothing happens).

Ingestion allocates and frees tens of MB per batch in every stage (message buffers, Arrow
columns, decoded tables, Parquet pages). Where allocators get transparent huge pages, each
fresh 2 MiB region is zeroed whole on first touch: kernel page zeroing was ~10% of all CPU
samples of a 1M-event run. With them off for the run, two interleaved A/Bs (1M demo events,
5-6 rounds each) ran 10% and 5% faster with 13% and 6% less CPU; later, with no huge pages in
use on the machine at all, there was no difference either way. Only the paging of memory
changes, nothing a program can observe; the previous setting is put back afterwards.
"""

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator

_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42


def _prctl() -> "ctypes._NamedFuncPointer | None":
    """libc's `prctl`, looked up first in the symbols the process already has loaded:
    `ctypes.util.find_library` forks `ldconfig -p` (of the ~500 MB ingest process, each run)."""
    for find in (lambda: None, lambda: ctypes.util.find_library("c")):
        try:
            return ctypes.CDLL(find(), use_errno=True).prctl  # type: ignore[no-any-return]
        except (OSError, AttributeError):
            continue
    return None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Transparent huge pages off inside the block, as they were after it."""
    prctl = _prctl()
    before = prctl(_PR_GET_THP_DISABLE, 0, 0, 0, 0) if prctl is not None else -1
    changed = before == 0 and prctl is not None and prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        if changed and prctl is not None:
            prctl(_PR_SET_THP_DISABLE, 0, 0, 0, 0)
