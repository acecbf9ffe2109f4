"""A second, private stack: up twice, down leaves no process, data survives down/up."""

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from typer.testing import CliRunner

from lakehouse.errors import StackError
from lakehouse.settings import Settings
from lakehouse.stack import LocalStack, StackOptions
from lakehouse.stack.commands import stack_app
from tests.conftest import stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def private(home: Path, **options: object) -> tuple[Settings, StackOptions]:
    env = stack_env(home)
    settings = Settings(
        home=home,
        kafka_bootstrap_servers=env["LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS"],
        schema_registry_url=env["LAKEHOUSE_SCHEMA_REGISTRY_URL"],
    )
    controller = int(env["LAKEHOUSE_KAFKA_CONTROLLER_PORT"])
    return settings, StackOptions(kafka_controller_port=controller, **options)  # type: ignore[arg-type]


def processes_under(home: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `home` (ours, by construction)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(home) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
def second(tmp_path: Path) -> Iterator[LocalStack]:
    settings, options = private(tmp_path / "home")
    local = LocalStack(settings, options)
    try:
        yield local
    finally:
        local.down()
        assert processes_under(settings.home_dir) == []


def consume_all(settings: Settings, topic: str, count: int) -> dict[bytes, bytes]:
    consumer = Consumer(
        settings.kafka_client_config(  # type: ignore[arg-type]
            **{"group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
        )
    )
    consumer.subscribe([topic])
    got: dict[bytes, bytes] = {}
    try:
        for _ in range(120):
            for message in consumer.consume(num_messages=500, timeout=1):
                assert message.error() is None, message.error()
                got[message.key()] = message.value()
            if len(got) >= count:
                break
    finally:
        consumer.close()
    return got


def test_up_twice_down_clean_and_data_survives(second: LocalStack) -> None:
    settings, home = second.settings, second.home
    first = second.up()
    assert first.running and first.answering
    pids = {service.name: service.pid for service in first.services}
    again = second.up()
    assert {service.name: service.pid for service in again.services} == pids

    runner = CliRunner()
    env = {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LAKEHOUSE_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
    }
    shown = runner.invoke(stack_app, ["status"], env=env)
    assert shown.exit_code == 0, shown.output
    assert settings.kafka_bootstrap_servers in shown.output
    assert settings.schema_registry_url in shown.output

    # Data: a two-partition topic with messages, and two schema versions.
    topic = "survivor"
    admin = AdminClient(settings.kafka_client_config())  # type: ignore[arg-type]
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(100)}
    producer = Producer(settings.kafka_client_config(acks="all"))  # type: ignore[arg-type]
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    client = SchemaRegistryClient(settings.registry_client_config())
    fields: list[dict[str, object]] = [{"name": "id", "type": "string"}]
    ids = []
    for version in range(3):
        record = {"type": "record", "name": "S", "fields": fields}
        ids.append(client.register_schema(f"{topic}-value", Schema(json.dumps(record), "AVRO")))
        fields = [*fields, {"name": f"f{version}", "type": ["null", "long"], "default": None}]
    schemas = {schema_id: client.get_schema(schema_id).schema_str for schema_id in ids}
    del admin, producer  # their handles would keep reconnecting to the stopped broker

    second.down()
    assert processes_under(home) == []
    for pid in pids.values():
        assert pid is not None and not psutil.pid_exists(pid)
    stopped = second.status()
    assert not stopped.running and not stopped.answering
    second.down()  # nothing to stop: harmless

    # A stale pid file (a dead process) must not fool `up`.
    (home / "kafka" / "kafka.pid").write_text(f"{next(iter(pids.values()))} 1.0\n")

    restarted = second.up()
    assert restarted.answering
    assert all(service.pid not in pids.values() for service in restarted.services)
    assert consume_all(settings, topic, len(sent)) == sent
    fresh = SchemaRegistryClient(settings.registry_client_config())
    assert {schema_id: fresh.get_schema(schema_id).schema_str for schema_id in ids} == schemas
    assert fresh.get_versions(f"{topic}-value") == [1, 2, 3]


def test_service_dying_on_start_reports_its_log(tmp_path: Path) -> None:
    settings, options = private(tmp_path / "home", kafka_heap="lots")
    local = LocalStack(settings, options)
    with pytest.raises(StackError, match=r"(?s)kafka exited during start.*Invalid maximum heap"):
        local.up()
    assert not local.status().running
    assert processes_under(settings.home_dir) == []


def test_port_taken_by_someone_else_is_refused(tmp_path: Path) -> None:
    settings, options = private(tmp_path / "home")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.kafka_port))
        squatter.listen()
        with pytest.raises(StackError, match="already in use"):
            LocalStack(settings, options).up()
    assert processes_under(settings.home_dir) == []
