"""How far each silver table of a stream is behind, from table properties only (no data
read): what a sensor asks every few seconds to decide whether a silver run is due."""

import json
from dataclasses import dataclass
from datetime import datetime

from pyiceberg.catalog import Catalog

from lakehouse.config import StreamSpec
from lakehouse.iceberg.catalog import table_or_none
from lakehouse.iceberg.commit import committed_offsets
from lakehouse.windowing.silver import silver_table_name
from lakehouse.windowing.state import SilverState, to_us
from lakehouse.windowing.watermark import watermark_of


@dataclass(frozen=True)
class WindowProgress:
    """One window declaration's silver table against its bronze table."""

    window: str
    offsets_behind: int  # bronze offsets committed past the silver position
    watermark_now_us: int | None  # the watermark a pass would reach without new rows
    closes_windows: bool  # ... and it passes the end of a window the last one did not

    @property
    def due(self) -> bool:
        """A pass would have work to do."""
        return self.offsets_behind > 0 or self.closes_windows


@dataclass(frozen=True)
class StreamProgress:
    """Every window declaration of one stream, and bronze's committed offsets."""

    stream: str
    bronze_offsets: dict[int, int]
    windows: list[WindowProgress]

    @property
    def due(self) -> list[str]:
        """The windows a silver run should process now."""
        return [w.window for w in self.windows if w.due]

    @property
    def run_key(self) -> str:
        """Names what a run started now would see: the same state, the same key."""
        offsets = json.dumps(
            {str(p): o for p, o in sorted(self.bronze_offsets.items())}, separators=(",", ":")
        )
        marks = ",".join(
            f"{w.window}={w.watermark_now_us}" for w in self.windows if w.window in self.due
        )
        return f"silver:{self.stream}@{offsets}:{marks}"


def silver_progress(catalog: Catalog, stream: StreamSpec, now: datetime) -> StreamProgress:
    """Progress of every window declaration of `stream` (none before bronze exists)."""
    bronze = table_or_none(catalog, stream.table)
    if bronze is None:
        return StreamProgress(stream.name, {}, [])
    committed = committed_offsets(bronze, stream.topic)
    now_us = to_us(now)
    windows = []
    for window, spec in stream.windows.items():
        silver = table_or_none(catalog, silver_table_name(stream, window))
        state = SilverState.from_properties(silver.properties if silver is not None else {})
        behind = sum(max(0, o - state.position.get(p, 0)) for p, o in committed.items())
        before = state.watermark.watermark_us
        after = watermark_of(state.watermark.partitions, now_us, stream.watermark)
        closes = after is not None and (
            before is None
            or ((before - spec.size_us) // spec.every_us + 1) * spec.every_us + spec.size_us
            <= after
        )
        windows.append(WindowProgress(window, behind, after, closes))
    return StreamProgress(stream.name, committed, windows)
