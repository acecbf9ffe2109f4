"""Python's cyclic garbage collector paused for the object-heavy phases of a maintenance run."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic collector paused, and restored as it was afterwards.

    Planning and committing allocate hundreds of thousands of short-lived, acyclic objects
    (manifest entries, and pyiceberg's parse and deep copy of a 1,000-snapshot metadata in
    the catalog commit), each burst making the collector rescan the whole heap: that was
    ~0.15 s of a 1.5 s compaction. Reference counting still frees everything as usual;
    cyclic garbage made meanwhile waits for the next collection after the run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
