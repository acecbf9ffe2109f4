"""Python's cyclic garbage collector paused for the object-heavy phases of a maintenance run."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic collector paused, and restored as it was afterwards.

    A compaction allocates hundreds of thousands of short-lived, acyclic objects (manifest
    entries, and pyiceberg's parse and deep copy of a 1,000-snapshot metadata in the catalog
    commit), each burst making the collector rescan the whole heap: that was ~0.15 s of a
    1.5 s compaction. Paused for planning and committing only, the entries planning left
    alive were scanned during the rewrite instead (two collections, ~0.07-0.1 s), so it is
    paused for the whole run (the rewrite itself allocates few Python objects) and the
    entries are dropped explicitly at the end (`ManifestEntries.clear`) so that reference
    counting frees them rather than the first collection after the run. Reference counting
    still frees everything as usual; cyclic garbage made meanwhile waits for the next
    collection after the run.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
