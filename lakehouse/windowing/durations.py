"""Durations as declared in `streams.yaml`: `<n>s|m|h|d` (e.g. `30s`, `5m`, `1d`).

Windows, watermarks and lateness are computed on integer microseconds since the epoch
(UTC), so a duration is kept as whole microseconds too.
"""

import re
from datetime import timedelta

_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_duration_us(text: str | int | float) -> int:
    """`'5m'` → 300_000_000 (microseconds). Raises ValueError naming the accepted forms."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; write <n>s, <n>m, <n>h or <n>d")
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration; write <n>s, <n>m, <n>h or <n>d")
    return int(match.group(1)) * _UNITS_US[match.group(2)]


def format_duration(us: int) -> str:
    """300_000_000 → `'5m'`: the largest unit that divides it (seconds otherwise)."""
    for unit in ("d", "h", "m"):
        if us and us % _UNITS_US[unit] == 0:
            return f"{us // _UNITS_US[unit]}{unit}"
    return f"{us / 1_000_000:g}s"


def as_timedelta(us: int) -> timedelta:
    """Microseconds as a `timedelta`."""
    return timedelta(microseconds=us)
