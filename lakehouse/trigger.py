"""When to ingest: a pure decision from the lag, the trigger thresholds and how long it waited.

The lag sensor calls `decide`; it never reads message bodies. The time the oldest waiting
message has waited is measured from when the sensor first saw lag (kept in its cursor).
"""

from dataclasses import dataclass

from lakehouse.config import Trigger
from lakehouse.kafka.offsets import PartitionRange, range_key, total_lag


@dataclass(frozen=True)
class TriggerDecision:
    """Run or not, why, and the cursor state to keep."""

    run: bool
    reason: str
    lag: int
    run_key: str | None
    lag_since: float | None


def decide(
    topic: str,
    ranges: list[PartitionRange],
    trigger: Trigger,
    *,
    now: float,
    lag_since: float | None,
) -> TriggerDecision:
    """Request a run when lag ≥ `min_lag_records` or the lag has waited ≥ `max_wait_seconds`.

    `run_key` is derived from the planned range, so the same evaluation twice gives the same key.
    """
    lag = total_lag(ranges)
    if lag == 0:
        return TriggerDecision(False, f"{topic}: no lag, nothing to ingest", 0, None, None)
    since = lag_since if lag_since is not None else now
    waited = now - since
    key = range_key(topic, ranges)
    if lag >= trigger.min_lag_records:
        reason = f"{topic}: lag {lag} ≥ {trigger.min_lag_records} records"
        return TriggerDecision(True, reason, lag, key, None)
    if waited >= trigger.max_wait_seconds:
        reason = f"{topic}: {lag} records waited {waited:.0f}s ≥ {trigger.max_wait_seconds:.0f}s"
        return TriggerDecision(True, reason, lag, key, None)
    reason = (
        f"{topic}: lag {lag} < {trigger.min_lag_records} records and waited {waited:.0f}s "
        f"< {trigger.max_wait_seconds:.0f}s"
    )
    return TriggerDecision(False, reason, lag, None, since)
