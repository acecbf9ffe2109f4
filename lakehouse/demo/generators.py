"""Seeded, realistic event generators for the demo streams.

The same seed and the same `start` give the same events, event ids included. Without
`start`, event times follow the wall clock. A fraction of events can be late (event time
1 to 45 minutes in the past), and clicks can switch to schema v2 after N events.
"""

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

MAX_LATENESS = timedelta(minutes=45)
MIN_LATENESS = timedelta(minutes=1)
_JITTER_US = 2_000_000  # on-time events arrive up to 2 s out of order


@dataclass(frozen=True, slots=True)
class Event:
    """One generated event: its Kafka key, Avro value and how it was made."""

    stream: str
    key: str
    value: dict[str, Any]
    schema_version: int = 1
    late: bool = False

    @property
    def event_id(self) -> str:
        """The event's unique id."""
        return str(self.value["event_id"])


class EventGenerator:
    """Base of the stream generators: ids, event time and lateness.

    `start` fixes a synthetic clock (`start + i * tick` for the i-th event), which makes
    the output fully deterministic; without it the wall clock is used.
    """

    stream = ""

    def __init__(
        self,
        seed: int | None = None,
        *,
        late_fraction: float = 0.0,
        start: datetime | None = None,
        tick: timedelta = timedelta(milliseconds=10),
    ) -> None:
        if not 0.0 <= late_fraction <= 1.0:
            raise ValueError("late_fraction must be between 0 and 1")
        self.rng = random.Random(seed)
        self.late_fraction = late_fraction
        self.count = 0
        self._clock: Callable[[], datetime]
        if start is None:
            self._clock = lambda: datetime.now(UTC)
        else:
            origin = start if start.tzinfo else start.replace(tzinfo=UTC)
            self._clock = lambda: origin + tick * self.count

    def __iter__(self) -> "EventGenerator":
        return self

    def __next__(self) -> Event:
        return self.next()

    def take(self, n: int) -> list[Event]:
        """The next `n` events."""
        return [self.next() for _ in range(n)]

    def next(self) -> Event:
        """The next event."""
        now = self._clock()
        late = self.late_fraction > 0 and self.rng.random() < self.late_fraction
        if late:
            span = (MAX_LATENESS - MIN_LATENESS).total_seconds()
            lateness = MIN_LATENESS + timedelta(seconds=self.rng.uniform(0, span))
        else:
            lateness = timedelta(microseconds=self.rng.randrange(_JITTER_US))
        event_time = now - lateness
        event_id = _uuid4(self.rng.getrandbits(128))
        event = self._make(event_id, event_time, late)
        self.count += 1
        return event

    def _make(self, event_id: str, event_time: datetime, late: bool) -> Event:
        raise NotImplementedError


_PAGES = ("/", "/search", "/category", "/product", "/cart", "/checkout")
_PAGE_WEIGHTS = tuple(itertools.accumulate((10, 15, 15, 40, 12, 8)))
_CITIES = ("Berlin", "Lisbon", "Paris", "Madrid", "Warsaw", "Dublin", "Oslo", "Vienna")


class ClickGenerator(EventGenerator):
    """Clickstream: users browse in sessions, view products, fill carts and buy.

    `v2_after=N` switches to schema v2 (adds `user_location`) after N events.
    """

    stream = "clicks"

    def __init__(
        self,
        seed: int | None = None,
        *,
        v2_after: int | None = None,
        users: int = 5_000,
        products: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(seed, **kwargs)
        self.v2_after = v2_after
        self.users = [f"user-{i:05d}" for i in range(users)]
        self.prices = {f"prod-{i:04d}": round(self.rng.uniform(2, 400), 2) for i in range(products)}
        self.products = list(self.prices)
        self.locations = {user: self.rng.choice(_CITIES) for user in self.users}
        self.sessions: dict[str, str] = {}
        self.carts: dict[str, list[str]] = {}

    def _session(self, user: str) -> str:
        if user not in self.sessions or self.rng.random() < 0.05:
            self.sessions[user] = f"sess-{self.rng.getrandbits(48):012x}"
            self.carts[user] = []
        return self.sessions[user]

    def _make(self, event_id: str, event_time: datetime, late: bool) -> Event:
        user = self.rng.choice(self.users)
        session = self._session(user)
        cart = self.carts[user]
        page = self.rng.choices(_PAGES, cum_weights=_PAGE_WEIGHTS)[0]
        product: str | None = None
        action = "view"
        if page == "/product":
            product = self.rng.choice(self.products)
            if self.rng.random() < 0.2:
                action = "add_to_cart"
                cart.append(product)
        elif page == "/cart" and cart and self.rng.random() < 0.3:
            action = "remove_from_cart"
            product = cart.pop(self.rng.randrange(len(cart)))
        elif page == "/checkout" and cart:
            action = "purchase"
            product = cart.pop()
        value: dict[str, Any] = {
            "event_id": event_id,
            "event_time": event_time,
            "user_id": user,
            "session_id": session,
            "page": page if product is None else f"{page}/{product}",
            "product_id": product,
            "action": action,
            "price": None if product is None else self.prices[product],
        }
        version = 1
        if self.v2_after is not None and self.count >= self.v2_after:
            version = 2
            known = self.rng.random() < 0.8
            value["user_location"] = self.locations[user] if known else None
        return Event(self.stream, user, value, version, late)


_COUNTRIES = {"US": "USD", "DE": "EUR", "FR": "EUR", "GB": "GBP", "JP": "JPY", "PT": "EUR"}


class PaymentGenerator(EventGenerator):
    """Card payments: cards have a home country, merchants a country and a typical ticket."""

    stream = "payments"

    def __init__(
        self, seed: int | None = None, *, cards: int = 2_000, merchants: int = 300, **kwargs: Any
    ) -> None:
        super().__init__(seed, **kwargs)
        countries = list(_COUNTRIES)
        self.cards = [f"card-{self.rng.getrandbits(40):010x}" for _ in range(cards)]
        self.home = {card: self.rng.choice(countries) for card in self.cards}
        self.merchants = {
            f"merch-{i:04d}": (self.rng.choice(countries), self.rng.lognormvariate(3.3, 0.9))
            for i in range(merchants)
        }
        self.merchant_ids = list(self.merchants)

    def _make(self, event_id: str, event_time: datetime, late: bool) -> Event:
        card = self.rng.choice(self.cards)
        merchant = self.rng.choice(self.merchant_ids)
        country, ticket = self.merchants[merchant]
        if self.rng.random() < 0.7:  # most spending happens at home
            country = self.home[card]
        currency = _COUNTRIES[country]
        amount = ticket * self.rng.lognormvariate(0, 0.5)
        if currency == "JPY":
            amount *= 150
        value = {
            "event_id": event_id,
            "event_time": event_time,
            "card_id": card,
            "merchant_id": merchant,
            "amount": Decimal(f"{min(amount, 99_999_999.99):.2f}"),
            "currency": currency,
            "country": country,
        }
        return Event(self.stream, card, value, 1, late)


class ReadingGenerator(EventGenerator):
    """IoT readings: each device's temperature drifts (random walk), batteries drain."""

    stream = "readings"

    def __init__(self, seed: int | None = None, *, devices: int = 200, **kwargs: Any) -> None:
        super().__init__(seed, **kwargs)
        self.devices = [f"dev-{i:04d}" for i in range(devices)]
        self.temperature = {d: self.rng.uniform(15, 30) for d in self.devices}
        self.humidity = {d: self.rng.uniform(30, 70) for d in self.devices}
        self.battery = {d: float(self.rng.randrange(120, 201)) / 2 for d in self.devices}

    def _make(self, event_id: str, event_time: datetime, late: bool) -> Event:
        device = self.rng.choice(self.devices)
        temperature = self.temperature[device] + self.rng.gauss(0, 0.2)
        self.temperature[device] = min(max(temperature, -20.0), 60.0)
        humidity = self.humidity[device] + self.rng.gauss(0, 0.5)
        self.humidity[device] = min(max(humidity, 0.0), 100.0)
        if self.rng.random() < 0.01:
            self.battery[device] = max(self.battery[device] - 0.5, 0.0)
        value = {
            "event_id": event_id,
            "event_time": event_time,
            "device_id": device,
            "temperature": round(self.temperature[device], 2),
            "humidity": round(self.humidity[device], 1),
            "battery": self.battery[device],  # a multiple of 0.5: exact as an Avro float
        }
        return Event(self.stream, device, value, 1, late)


_VERSION_MASK = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS = (0x4000 << 64) | (0x8000 << 48)


def _uuid4(bits: int) -> str:
    """`str(uuid.UUID(int=bits, version=4))`, three times faster."""
    h = f"{bits & _VERSION_MASK | _VERSION_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


GENERATORS: dict[str, type[EventGenerator]] = {
    "clicks": ClickGenerator,
    "payments": PaymentGenerator,
    "readings": ReadingGenerator,
}


def generator(stream: str, seed: int | None = None, **kwargs: Any) -> EventGenerator:
    """A generator for `stream` (`v2_after` is only accepted for clicks)."""
    if stream not in GENERATORS:
        raise ValueError(f"unknown demo stream {stream!r}; choose one of {tuple(GENERATORS)}")
    if stream != "clicks" and kwargs.get("v2_after") is not None:
        raise ValueError("v2_after applies to the clicks stream only")
    if stream != "clicks":
        kwargs.pop("v2_after", None)
    return GENERATORS[stream](seed, **kwargs)
