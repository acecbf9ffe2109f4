"""Settings of one deployment: every address and credential comes from the environment.

Variables are prefixed `LAKEHOUSE_` (e.g. `LAKEHOUSE_KAFKA_BOOTSTRAP_SERVERS`). The Iceberg
catalog is configured the pyiceberg way (`.pyiceberg.yaml` or `PYICEBERG_CATALOG__LAKEHOUSE__*`);
see `lakehouse.iceberg.catalog`.
"""

import json
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_REGISTRY_PATH = "/apis/ccompat/v7"


class Settings(BaseSettings):
    """Where the services are and where local state lives."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", frozen=True)

    home: Path = Field(default=Path(".lakehouse"), description="All local state.")
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_config: str = Field(
        default="{}",
        description="Extra librdkafka properties as JSON (security.protocol, sasl.*, ...).",
    )
    schema_registry_url: str = f"http://127.0.0.1:8081{DEFAULT_REGISTRY_PATH}"
    schema_registry_basic_auth: SecretStr | None = Field(
        default=None, description="'user:password' for the registry, if it needs one."
    )
    schema_registry_timeout_seconds: float = 10.0
    catalog_name: str = "lakehouse"
    consumer_group: str = "lakehouse"
    kafka_reader: Literal["auto", "columnar", "process", "thread"] = Field(
        default="auto",
        description=(
            "How ingestion reads Kafka: 'columnar' (librdkafka straight into Arrow, off the "
            "GIL), 'process' (confluent-kafka in a child process), 'thread' (confluent-kafka "
            "in the run's process); 'auto' is columnar where its C module was built, else "
            "process."
        ),
    )
    streams_file: Path = Field(default=Path("streams.yaml"), description="Stream declarations.")
    bind_host: str = "127.0.0.1"
    run_heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="How often a running run writes a heartbeat event."
    )
    run_dead_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A launched run silent this long is dead: marked failed, its stream goes on.",
    )

    @field_validator("kafka_config")
    @classmethod
    def _json_object(cls, value: str) -> str:
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("LAKEHOUSE_KAFKA_CONFIG must be a JSON object")
        return value

    @property
    def home_dir(self) -> Path:
        """The absolute state folder (`$LAKEHOUSE_HOME`)."""
        return self.home.expanduser().resolve()

    @cached_property
    def kafka_extra(self) -> dict[str, str]:
        """Extra librdkafka properties, merged into every client's config."""
        return {str(k): str(v) for k, v in json.loads(self.kafka_config).items()}

    def kafka_client_config(self, **overrides: str | int | bool) -> dict[str, object]:
        """A confluent-kafka config with the bootstrap servers and extra properties."""
        config: dict[str, object] = {"bootstrap.servers": self.kafka_bootstrap_servers}
        config.update(self.kafka_extra)
        config.update(overrides)
        return config

    def registry_client_config(self) -> dict[str, object]:
        """A confluent-kafka `SchemaRegistryClient` config with auth and timeout."""
        config: dict[str, object] = {
            "url": self.schema_registry_url,
            "timeout": self.schema_registry_timeout_seconds,
        }
        if self.schema_registry_basic_auth is not None:
            config["basic.auth.user.info"] = self.schema_registry_basic_auth.get_secret_value()
        urls = [url.strip().lower() for url in self.schema_registry_url.split(",")]
        if all(url.startswith("http://") for url in urls):
            # No TLS to verify: the client need not load the CA bundle (~40 ms CPU each time).
            config["ssl.ca.location"] = False
        return config

    @property
    def kafka_port(self) -> int:
        """The port of the first bootstrap server (the local broker listens there)."""
        first = self.kafka_bootstrap_servers.split(",")[0]
        return int(first.rsplit(":", 1)[1])

    @property
    def registry_port(self) -> int:
        """The port of the registry URL (the local registry listens there)."""
        parsed = urlparse(self.schema_registry_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)


def load_settings() -> Settings:
    """Settings from the environment."""
    return Settings()
