"""Which windows hold an event time, and which windows close between two watermarks.

Times are integer microseconds since the epoch (UTC). A window is `[start, start + size)`;
starts are the multiples of `every` (tumbling windows: every = size), so windows are aligned
to the epoch: a 1-minute window starts on the minute, a 1-day window at midnight UTC. Every
function has a scalar form (Python ints) and, where a frame needs it, a Polars form that
computes the same thing column-wise.
"""

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class WindowShape:
    """Window size and the distance between window starts, in microseconds."""

    size_us: int
    every_us: int

    def __post_init__(self) -> None:
        if not 0 < self.every_us <= self.size_us:
            raise ValueError(f"need 0 < every ({self.every_us}) <= size ({self.size_us})")

    # Scalar forms -------------------------------------------------------------------------

    def first_start(self, t: int) -> int:
        """Start of the earliest window holding `t` (the smallest start > t - size)."""
        return ((t - self.size_us) // self.every_us + 1) * self.every_us

    def last_start(self, t: int) -> int:
        """Start of the latest window holding `t` (the largest start <= t)."""
        return (t // self.every_us) * self.every_us

    def starts_holding(self, t: int) -> range:
        """Starts of every window that holds `t`, earliest first."""
        return range(self.first_start(t), self.last_start(t) + 1, self.every_us)

    def first_end(self, t: int) -> int:
        """End of the earliest window holding `t`: once the watermark reaches it, a window
        holding `t` has closed."""
        return self.first_start(t) + self.size_us

    def starts_closing(self, after: int | None, upto: int, lowest: int) -> range:
        """Starts of the windows whose end is in `(after, upto]` (`after=None`: no lower
        bound, so from the window holding `lowest`, the earliest event time there is)."""
        if after is None:
            first = self.first_start(lowest)
        else:
            first = ((after - self.size_us) // self.every_us + 1) * self.every_us
        last = ((upto - self.size_us) // self.every_us) * self.every_us
        return range(first, last + 1, self.every_us)

    # Column forms -------------------------------------------------------------------------

    def first_end_expr(self, t: pl.Expr) -> pl.Expr:
        """`first_end` of each value of `t` (Int64 microseconds)."""
        return ((t - self.size_us) // self.every_us + 1) * self.every_us + self.size_us

    def starts_expr(self, t: pl.Expr) -> pl.Expr:
        """A list of the starts of every window holding each `t` (for `explode`)."""
        if self.size_us == self.every_us:
            return (t // self.every_us) * self.every_us  # tumbling: one window, no list
        first = (t - self.size_us) // self.every_us + 1
        last = t // self.every_us
        return pl.int_ranges(first, last + 1) * self.every_us

    @property
    def tumbling(self) -> bool:
        """One window per event time."""
        return self.size_us == self.every_us


def window_starts(frame: pl.LazyFrame, shape: WindowShape, t: str, out: str) -> pl.LazyFrame:
    """`frame` with one row per (row, window holding `t`), the window start in `out`."""
    frame = frame.with_columns(shape.starts_expr(pl.col(t)).alias(out))
    return frame if shape.tumbling else frame.explode(out)


def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Half-open `[lo, hi)` intervals sorted and merged where they touch or overlap."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(i for i in intervals if i[0] < i[1]):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
