"""Late events: which new rows arrive for windows that have already closed.

An event is late when a window holding it had already closed when it was processed: the
end of the earliest window holding it is at or before the watermark in force (the one the
previous silver commit left). A closed window takes corrections while the watermark is
before `window_end + allowed_lateness`; past that it is frozen and stays as it is. A late
event is `corrected` when every closed window holding it took the correction
(`windows_corrected` counts those that did). docs/windows.md has the worked example.
"""

from dataclasses import dataclass

import polars as pl

from lakehouse.windowing.ranges import WindowShape


@dataclass(frozen=True)
class LateRule:
    """The window shape, the allowed lateness and the watermark in force."""

    shape: WindowShape
    allowed_lateness_us: int
    watermark_us: int | None

    def closed_count(self, t: int) -> int:
        """How many windows holding `t` have closed (end <= watermark)."""
        if self.watermark_us is None:
            return 0
        return len(
            [s for s in self.shape.starts_holding(t) if s + self.shape.size_us <= self.watermark_us]
        )

    def correctable_starts(self, t: int) -> list[int]:
        """Starts of the closed windows holding `t` that still take corrections."""
        wm = self.watermark_us
        if wm is None:
            return []
        size, late = self.shape.size_us, self.allowed_lateness_us
        return [s for s in self.shape.starts_holding(t) if s + size <= wm < s + size + late]

    def columns(self, t: pl.Expr) -> list[pl.Expr]:
        """Column forms: `late`, `windows_closed`, `windows_corrected`, `corrected`,
        `lateness_seconds` (watermark minus event time) for each event time `t`."""
        if self.watermark_us is None:
            return [
                pl.lit(False).alias("late"),
                pl.lit(0, pl.Int32).alias("windows_closed"),
                pl.lit(0, pl.Int32).alias("windows_corrected"),
                pl.lit(False).alias("corrected"),
                pl.lit(None, pl.Float64).alias("lateness_seconds"),
            ]
        size, every = self.shape.size_us, self.shape.every_us
        wm, late = self.watermark_us, self.allowed_lateness_us
        first_k = (t - size) // every + 1  # window index k: start = k * every
        last_k = t // every
        closed_k = (wm - size) // every  # windows k <= this have closed
        frozen_k = (wm - size - late) // every  # windows k <= this take no correction
        closed = pl.max_horizontal(pl.min_horizontal(last_k, closed_k) - first_k + 1, 0)
        lowest_open = pl.max_horizontal(first_k, frozen_k + 1)
        corrected = pl.max_horizontal(pl.min_horizontal(last_k, closed_k) - lowest_open + 1, 0)
        return [
            (closed > 0).alias("late"),
            closed.cast(pl.Int32).alias("windows_closed"),
            corrected.cast(pl.Int32).alias("windows_corrected"),
            ((closed > 0) & (corrected == closed)).alias("corrected"),
            ((wm - t) / 1_000_000).cast(pl.Float64).alias("lateness_seconds"),
        ]

    def correctable_starts_expr(self, t: pl.Expr) -> pl.Expr:
        """A list of `correctable_starts` per event time (empty when none)."""
        if self.watermark_us is None:
            return pl.lit([], pl.List(pl.Int64))
        size, every = self.shape.size_us, self.shape.every_us
        wm, late = self.watermark_us, self.allowed_lateness_us
        first_k = pl.max_horizontal((t - size) // every + 1, (wm - size - late) // every + 1)
        last_k = pl.min_horizontal(t // every, (wm - size) // every)
        return pl.int_ranges(first_k, pl.max_horizontal(last_k + 1, first_k)) * every
