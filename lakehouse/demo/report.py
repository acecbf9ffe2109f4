"""What a producer run did: every message is accounted for as delivered, malformed or failed."""

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ProduceReport:
    """Counts of one stream's run. After the final flush
    `produced == delivered + sum(malformed.values()) + failed`."""

    stream: str
    topic: str
    seed: int
    produced: int = 0
    """Messages handed to the Kafka producer (good events and malformed values)."""
    delivered: int = 0
    """Good events acknowledged by the broker."""
    failed: int = 0
    """Messages that were not delivered (their errors are in `errors`)."""
    malformed: Counter[str] = field(default_factory=Counter)
    """Malformed values acknowledged by the broker, by kind."""
    late: int = 0
    """Delivered events with an event time 1 to 45 minutes in the past."""
    v2: int = 0
    """Delivered clicks written with schema v2."""
    schema_ids: dict[int, int] = field(default_factory=dict)
    """Registry id of each schema version used."""
    ids: dict[str, str] = field(default_factory=dict)
    """event_id → key of every delivered event (only with `collect_ids`)."""
    errors: list[str] = field(default_factory=list)
    """The first distinct delivery errors."""
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """Every message was delivered."""
        return self.failed == 0

    @property
    def rate(self) -> float:
        """Acknowledged messages per second."""
        done = self.delivered + sum(self.malformed.values())
        return done / self.seconds if self.seconds > 0 else 0.0

    def error(self, message: str, limit: int = 20) -> None:
        """Count one failed message and keep its error if it is new."""
        self.failed += 1
        if len(self.errors) < limit and message not in self.errors:
            self.errors.append(message)

    def summary(self) -> str:
        """One line for humans."""
        bad = ", ".join(f"{k}={v}" for k, v in sorted(self.malformed.items())) or "none"
        text = (
            f"{self.stream} → {self.topic}: {self.delivered} delivered, {self.failed} failed, "
            f"malformed {bad}, late {self.late}, v2 {self.v2}, "
            f"{self.seconds:.1f}s ({self.rate:,.0f} msg/s), seed {self.seed}"
        )
        if self.interrupted:
            text += " [interrupted]"
        return text
