"""The worked example of docs/windows.md through the real broker, registry and bronze: a
phone records a click at 12:00:00, is offline, and its event reaches Kafka at 12:45:00."""

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from lakehouse.demo.framing import confluent_serializer
from lakehouse.demo.streams import demo_schema
from lakehouse.iceberg.catalog import load_catalog
from lakehouse.kafka.admin import ensure_topic
from lakehouse.settings import Settings
from lakehouse.windowing.silver import run_silver_pass
from tests.integration.ingest_helpers import bronze_frame, fresh_spec, ingest_once
from tests.integration.silver_helpers import late_frame, silver_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOON = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class _Clicks:
    """Clicks with chosen event times, Kafka timestamps and partitions."""

    def __init__(self, settings: Settings, topic: str) -> None:
        ensure_topic(settings, topic, partitions=2)
        client = SchemaRegistryClient(settings.registry_client_config())
        self.serialize = confluent_serializer(client, demo_schema("clicks", 1), topic)
        self.producer = Producer(settings.kafka_client_config())  # type: ignore[arg-type]
        self.topic = topic

    def send(
        self, event_id: str, event_time: datetime, kafka_time: datetime, partition: int, user: str
    ) -> None:
        value = {
            "event_id": event_id,
            "event_time": event_time,
            "user_id": user,
            "session_id": f"s-{user}",
            "page": "/",
            "product_id": None,
            "action": "view",
            "price": None,
        }
        self.producer.produce(
            self.topic,
            self.serialize(value),
            user.encode(),
            partition=partition,
            timestamp=int(kafka_time.timestamp() * 1000),
        )

    def flush(self) -> None:
        assert self.producer.flush(60) == 0


def test_the_phone_offline_for_45_minutes(stack: Settings) -> None:
    window = {
        "tumbling": "1m",
        "group_by": ["page"],
        "aggregate": {"views": "count(*)", "users": "count(distinct user_id)"},
        "allowed_lateness": "1d",
    }
    spec = fresh_spec(
        watermark={"max_out_of_orderness": "10s", "idle_partition_timeout": "60s"},
        windows={"views": window},
    )
    clicks = _Clicks(stack, spec.topic)
    catalog = load_catalog(stack)
    on_time = [NOON + timedelta(seconds=s) for s in range(-120, 45 * 60 - 5, 10)]  # to 12:44:50
    for i, moment in enumerate(on_time):
        clicks.send(f"on-time-{i}", moment, moment, i % 2, f"u{i % 5}")
    clicks.flush()
    ingest_once(stack, spec)
    first = run_silver_pass(stack, spec, "views", catalog=catalog, now=NOON + timedelta(minutes=45))
    # partitions 0 and 1 last saw 12:44:40 and 12:44:50: the watermark is 12:44:40 - 10 s
    assert first.watermark == NOON + timedelta(minutes=44, seconds=30)
    noon_users = {
        f"u{i % 5}" for i, m in enumerate(on_time) if NOON <= m < NOON + timedelta(minutes=1)
    }
    noon_views = sum(1 for m in on_time if NOON <= m < NOON + timedelta(minutes=1))

    arrival = NOON + timedelta(minutes=45)
    clicks.send("the-phone", NOON, arrival, 0, "phone")  # recorded 12:00:00, sent 12:45:00
    for s in (0, 10, 20):
        moment = arrival + timedelta(seconds=s)
        clicks.send(f"after-{s}", moment, moment, s // 10 % 2, "u1")
    clicks.flush()
    ingest_once(stack, spec)
    second = run_silver_pass(
        stack, spec, "views", catalog=catalog, now=arrival + timedelta(seconds=20)
    )

    bronze = bronze_frame(stack, spec).filter(pl.col("event_id") == "the-phone")
    assert bronze.height == 1
    assert bronze["event_time"].to_list() == [NOON]
    assert bronze["_kafka_timestamp"].to_list() == [arrival]

    assert second.late_events == 1 and second.late_corrected == 1 and second.corrections == 1
    [late] = late_frame(catalog, spec, "views").to_dicts()
    assert late["kafka_partition"] == 0 and late["kafka_offset"] == bronze["_kafka_offset"][0]
    assert late["event_time"] == NOON
    assert late["watermark"] == NOON + timedelta(minutes=44, seconds=30)
    assert late["lateness_seconds"] == 44 * 60 + 30
    assert late["corrected"] is True and late["windows_corrected"] == 1

    rows = {r["window_start"]: r for r in silver_frame(catalog, spec, "views").to_dicts()}
    noon = rows[NOON]
    assert noon["revision"] == 2 and noon["final"] is True
    assert noon["views"] == noon_views + 1
    assert noon["users"] == len(noon_users | {"phone"})
    assert noon["updated_at"] == arrival + timedelta(seconds=20)
    assert all(r["revision"] == 1 for start, r in rows.items() if start != NOON)
