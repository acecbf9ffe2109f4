"""Transparent huge pages are off inside `huge_pages.disabled()`, for this process and the
processes it starts there, and as before afterwards."""

import ctypes
import subprocess
import sys

import pytest

from lakehouse import huge_pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux")

_GET = 42  # PR_GET_THP_DISABLE
_CHILD = "import ctypes; print(ctypes.CDLL(None).prctl(42, 0, 0, 0, 0))"


def thp_disabled() -> int:
    return int(ctypes.CDLL(None).prctl(_GET, 0, 0, 0, 0))


def test_off_inside_and_as_before_after() -> None:
    assert thp_disabled() == 0
    with huge_pages.disabled():
        assert thp_disabled() == 1
        started = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True)
        assert started.stdout.strip() == "1"  # a child process started inside inherits it
    assert thp_disabled() == 0


def test_put_back_after_an_error_and_nested_blocks_keep_the_outer_setting() -> None:
    with pytest.raises(RuntimeError), huge_pages.disabled():
        raise RuntimeError("boom")
    assert thp_disabled() == 0
    with huge_pages.disabled():
        with huge_pages.disabled():
            assert thp_disabled() == 1
        assert thp_disabled() == 1  # the inner block did not switch it back on
    assert thp_disabled() == 0


def test_prctl_is_found_without_starting_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """ctypes' `find_library` forks `ldconfig -p`: the lookup must not need it."""
    import ctypes.util

    monkeypatch.setattr(
        ctypes.util, "find_library", lambda name: pytest.fail(f"find_library({name!r}) called")
    )
    assert huge_pages._prctl() is not None
    with huge_pages.disabled():
        assert thp_disabled() == 1
