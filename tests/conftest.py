"""Shared fixtures. `stack` starts the real Kafka broker and schema registry once per session
on free ports under a temporary LAKEHOUSE_HOME, and stops them afterwards."""

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.settings import Settings


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(home: Path) -> dict[str, str]:
    """Environment for a private stack: its own home and three distinct ports."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    kafka_port, controller_port, registry_port = sorted(ports)
    return {
        "LAKEHOUSE_HOME": str(home),
        "LAKEHOUSE_KAFKA_CONTROLLER_PORT": str(controller_port),
        "LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_port}",
        "LAKEHOUSE_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{registry_port}/apis/ccompat/v7",
    }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The real local stack (Kafka + registry), up for the whole session.

    With LAKEHOUSE_TEST_STACK=running the tests use the stack the environment names instead
    (LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS, LAKEHOUSE_SCHEMA_REGISTRY_URL), e.g. your own cluster.
    """
    if os.environ.get("LAKEHOUSE_TEST_STACK") == "running":
        yield Settings()
        return
    from lakehouse.stack import LocalStack

    home = tmp_path_factory.mktemp("lakehouse-home")
    env = stack_env(home)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    settings = Settings()
    local = LocalStack(settings)
    try:
        local.up()
        yield settings
    finally:
        local.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
