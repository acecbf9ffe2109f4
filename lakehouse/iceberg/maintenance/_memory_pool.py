"""Arrow's jemalloc pool as the default memory pool while a compaction runs."""

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa


@contextmanager
def jemalloc_pool() -> Iterator[None]:
    """pyarrow's default memory pool set to jemalloc (where pyarrow has it), restored after.

    pyarrow's default pool (mimalloc in its Linux wheels) takes fresh memory in transparent
    huge pages where the machine allows them: each first touch of a 2 MiB region zeroes all
    of it, and a compaction's casts and Parquet encoding keep touching fresh regions (~9 % of
    the run's CPU samples were that zeroing, under `mi_page_free_list_extend`). With jemalloc
    two interleaved A/Bs of the benchmark's compaction (8 runs each) took 1.14 vs 1.24 s and
    1.34 vs 1.42 s median, 5-8 % less CPU; the system allocator cut the kernel time as much
    but spent it again copying buffers that grow (1.34 vs 1.32 s). Buffers remember the pool
    they came from, so those made before or after the run are freed correctly; other threads
    of the process allocate from jemalloc for the run's duration.
    """
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc: keep its default
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
