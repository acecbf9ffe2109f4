import pyarrow as pa
import pytest

from lakehouse.iceberg.maintenance._memory_pool import jemalloc_pool


def test_arrow_allocates_from_jemalloc_inside_and_from_the_previous_pool_after() -> None:
    before = pa.default_memory_pool().backend_name
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow has no jemalloc")
    with jemalloc_pool():
        assert pa.default_memory_pool().backend_name == "jemalloc"
        inside = pa.array(["x" * 100] * 1_000).cast(pa.large_string())
    assert pa.default_memory_pool().backend_name == before
    # a buffer made inside is freed by its own pool after the swap back
    used = pa.jemalloc_memory_pool().bytes_allocated()
    assert used > 0
    del inside
    assert pa.jemalloc_memory_pool().bytes_allocated() < used


def test_the_previous_pool_is_restored_when_the_block_raises() -> None:
    before = pa.default_memory_pool().backend_name
    with pytest.raises(RuntimeError), jemalloc_pool():
        raise RuntimeError("boom")
    assert pa.default_memory_pool().backend_name == before
