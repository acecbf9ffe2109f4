"""The local schema registry: Apicurio Registry in its Confluent-compatible mode.

Schemas live in our Kafka broker (Apicurio's `kafkasql` storage: the `kafkasql-journal`
topic), so they survive a stack restart. The Confluent API is at `/apis/ccompat/v7`.
"""

from pathlib import Path
from urllib.parse import urlparse

import httpx

from lakehouse.settings import Settings
from lakehouse.stack.options import StackOptions

NAME = "registry"
JOURNAL_TOPIC = "kafkasql-journal"


class RegistryFiles:
    """Where the registry keeps its files under `$LAKEHOUSE_HOME/registry/`."""

    def __init__(self, home: Path) -> None:
        self.dir = home / NAME
        self.tmp = self.dir / "tmp"
        self.log = self.dir / "registry.log"
        self.pid = self.dir / "registry.pid"


def system_properties(
    settings: Settings, options: StackOptions, files: RegistryFiles
) -> dict[str, object]:
    """Quarkus/Apicurio configuration, passed as `-D` system properties."""
    host = settings.bind_host
    return {
        "quarkus.http.host": host,
        "quarkus.http.port": settings.registry_port,
        # The management interface is fixed on at build time; move it off its shared default
        # (0.0.0.0:9000) so that several stacks can run side by side.
        "quarkus.management.host": host,
        "quarkus.management.port": options.registry_management_port,
        "apicurio.storage.kind": "kafkasql",
        "apicurio.kafkasql.bootstrap.servers": settings.kafka_bootstrap_servers,
        "apicurio.kafkasql.topic": JOURNAL_TOPIC,
        # Startup reads the snapshots topic with this poll timeout (default 5 s, twice).
        "apicurio.kafkasql.consumer.poll.timeout": 500,
        # Confluent's defaults: global BACKWARD compatibility, and reject invalid schemas.
        "apicurio.rules.global.compatibility": "BACKWARD",
        "apicurio.rules.global.validity": "FULL",
        "apicurio.storage.snapshot.location": files.tmp,
        "apicurio.import.work-dir": files.tmp,
        "java.io.tmpdir": files.tmp,
    }


def registry_command(
    java: Path, dist: Path, settings: Settings, options: StackOptions, files: RegistryFiles
) -> list[str]:
    """The java command line of the registry."""
    props = system_properties(settings, options, files)
    return [
        str(java),
        f"-Xmx{options.registry_heap}",
        # A local registry gains nothing from C2 and a parallel GC; this halves its start.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Djava.awt.headless=true",
        *(f"-D{key}={value}" for key, value in props.items()),
        "-jar",
        str(dist / "quarkus-run.jar"),
    ]


def base_url(settings: Settings) -> str:
    """The registry's Confluent-compatible base URL."""
    return settings.schema_registry_url.rstrip("/")


def answering(settings: Settings) -> bool:
    """Whether `GET <url>/subjects` answers 200."""
    try:
        response = httpx.get(f"{base_url(settings)}/subjects", timeout=3)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def address(settings: Settings) -> str:
    """host:port of the registry."""
    parsed = urlparse(settings.schema_registry_url)
    return f"{parsed.hostname}:{settings.registry_port}"
