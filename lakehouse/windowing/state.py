"""What a silver table remembers between passes, as table properties set in its commits.

- `lakehouse.silver.position`: {"<partition>": next bronze offset} processed (offsets live in
  the bronze rows, so they survive compaction and snapshot expiry; snapshot ids do not).
- `lakehouse.watermark`: the watermark in force (ISO-8601, UTC); `lakehouse.silver.partitions`:
  the per-partition clocks it came from.
- `lakehouse.silver.late-outbox`: the late-event rows of the last commit, until they are in
  `silver.late_events` (Arrow IPC, zstd, base64), with `lakehouse.silver.late-seq` numbering
  them; the late-events table records the last sequence number it holds per window.
- `lakehouse.silver.declaration`: what the rows were computed from; a changed declaration is
  refused rather than mixed into old rows.
- `lakehouse.silver.lookup-snapshot`: the lookup snapshot the last commit enriched with.
"""

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from lakehouse.windowing.watermark import WatermarkState

POSITION = "lakehouse.silver.position"
WATERMARK = "lakehouse.watermark"
PARTITIONS = "lakehouse.silver.partitions"
OUTBOX = "lakehouse.silver.late-outbox"
LATE_SEQ = "lakehouse.silver.late-seq"
DECLARATION = "lakehouse.silver.declaration"
LOOKUP_SNAPSHOT = "lakehouse.silver.lookup-snapshot"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class SilverState:
    """A silver table's progress: bronze position, watermark, late rows not yet flushed."""

    position: dict[int, int] = field(default_factory=dict)
    watermark: WatermarkState = field(default_factory=WatermarkState)
    late_seq: int = 0
    outbox: pa.Table | None = None  # late-event rows numbered `late_seq`, maybe not flushed
    declaration: str | None = None
    lookup_snapshot: int | None = None

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> "SilverState":
        """The state a silver table's properties hold (empty for a new table)."""
        position = {int(p): int(o) for p, o in json.loads(properties.get(POSITION) or "{}").items()}
        watermark = parse_timestamp_us(properties.get(WATERMARK))
        clocks = WatermarkState.partitions_from_json(properties.get(PARTITIONS))
        outbox_text = properties.get(OUTBOX)
        lookup = properties.get(LOOKUP_SNAPSHOT)
        return cls(
            position=position,
            watermark=WatermarkState(watermark, clocks),
            late_seq=int(properties.get(LATE_SEQ) or 0),
            outbox=decode_rows(outbox_text) if outbox_text else None,
            declaration=properties.get(DECLARATION),
            lookup_snapshot=int(lookup) if lookup else None,
        )

    def to_properties(self) -> dict[str, str]:
        """The properties that record this state (set in the silver commit)."""
        return {
            POSITION: json.dumps(
                {str(p): o for p, o in sorted(self.position.items())}, separators=(",", ":")
            ),
            WATERMARK: format_timestamp(self.watermark.watermark_us),
            PARTITIONS: self.watermark.to_json(),
            LATE_SEQ: str(self.late_seq),
            OUTBOX: encode_rows(self.outbox) if self.outbox is not None else "",
            DECLARATION: self.declaration or "",
            LOOKUP_SNAPSHOT: "" if self.lookup_snapshot is None else str(self.lookup_snapshot),
        }


def encode_rows(rows: pa.Table) -> str:
    """Rows as base64 text of a zstd-compressed Arrow IPC stream."""
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, rows.schema, options=options) as writer:
        writer.write_table(rows)
    return base64.b64encode(sink.getvalue()).decode("ascii")


def decode_rows(text: str) -> pa.Table:
    """Inverse of `encode_rows`."""
    with pa.ipc.open_stream(io.BytesIO(base64.b64decode(text))) as reader:
        return reader.read_all()


def format_timestamp(us: int | None) -> str:
    """Microseconds since the epoch as ISO-8601 UTC (empty for None)."""
    moment = to_datetime(us)
    return "" if moment is None else moment.isoformat()


def parse_timestamp_us(text: str | None) -> int | None:
    """Inverse of `format_timestamp`."""
    if not text:
        return None
    return (datetime.fromisoformat(text) - EPOCH) // _MICROSECOND


def to_datetime(us: int | None) -> datetime | None:
    """Microseconds since the epoch as an aware UTC datetime."""
    return None if us is None else EPOCH + timedelta(microseconds=us)


def to_us(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch."""
    return (moment - EPOCH) // _MICROSECOND
