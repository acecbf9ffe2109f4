"""The Quix Streams peer of bench/windows.py, phase (c): the same 5-minute window sliding
every minute, views per page, computed by Quix Streams from the same Kafka topic.

Runs in its own virtualenv (bench/requirements-quix.txt: quixstreams pins an older
confluent-kafka and pydantic than this project), so it imports nothing from `lakehouse`.

    python bench/quix_peer.py --broker HOST:PORT --registry URL --topic T --views N --state DIR

Reads the topic from the start with a fresh consumer group: Avro values through the schema
registry (Quix's AvroDeserializer, which hands them to confluent-kafka's), event time as the
message timestamp, `action = 'view'` kept, re-keyed by page (`group_by`: Quix's repartition
topic), a hopping window of 5 min every 1 min counting per page, emitted on close. It stops
once the window stage has taken all N view events and prints one JSON line: seconds (from
the application's start to then), CPU seconds, windows emitted, peak MB.
"""

import argparse
import json
import resource
import time
import uuid

from quixstreams import Application
from quixstreams.models.serializers.avro import AvroDeserializer
from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--views", type=int, required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args()

    app = Application(
        broker_address=args.broker,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=args.state,
    )
    topic = app.topic(
        args.topic,
        value_deserializer=AvroDeserializer(
            schema_registry_client_config=SchemaRegistryClientConfig(url=args.registry)
        ),
        timestamp_extractor=lambda value, headers, ts, kind: int(
            value["event_time"].timestamp() * 1000
        ),
    )
    seen = {"views": 0, "windows": 0}

    def count_input(value: dict) -> None:
        seen["views"] += 1
        if seen["views"] >= args.views:
            app.stop()

    def count_window(value: dict) -> None:
        seen["windows"] += 1

    sdf = app.dataframe(topic)
    sdf = sdf.filter(lambda value: value["action"] == "view")
    # the repartition topic is JSON: keep what the window needs (the event time is the
    # message timestamp from here on)
    sdf = sdf.apply(lambda value: {"page": value["page"], "user_id": value["user_id"]})
    sdf = sdf.group_by("page")
    sdf = sdf.update(count_input)
    sdf = sdf.hopping_window(duration_ms=5 * 60_000, step_ms=60_000).count().final()
    sdf = sdf.update(count_window)

    started = time.perf_counter()
    cpu = time.process_time()
    app.run()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "records": seen["views"],
                "windows_emitted": seen["windows"],
                "seconds": time.perf_counter() - started,
                "cpu_seconds": round(time.process_time() - cpu, 2),
                "peak_mb": round(usage.ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
