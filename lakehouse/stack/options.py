"""Knobs of the local stack only (cache, extra ports, Java, heap), from `LAKEHOUSE_*` variables.

The addresses clients use (broker, registry URL) stay in `lakehouse.settings.Settings`; these
are the ones only the local processes need.
"""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_VERSION = "4.1.1"
APICURIO_VERSION = "3.3.3"
KAFKA_MIN_JAVA = 17
# Apicurio Registry 3.3.x is compiled for Java 21 (class file version 65).
REGISTRY_MIN_JAVA = 21


class StackOptions(BaseSettings):
    """Local-stack settings (env prefix `LAKEHOUSE_`)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", frozen=True, extra="ignore")

    cache_dir: Path = Field(
        default=Path("~/.cache/lakehouse"), description="Fetched jars and distributions."
    )
    kafka_controller_port: int | None = Field(
        default=None, description="KRaft controller port; default broker port + 1."
    )
    registry_management_port: int = Field(
        default=0, description="Quarkus management port of the registry; 0 picks a free one."
    )
    java_home: Path | None = Field(default=None, description="A JDK to prefer over PATH.")
    jvm_dirs: str = Field(
        default="/usr/lib/jvm",
        description="Folders (os.pathsep-separated) whose JDKs are tried after PATH.",
    )
    kafka_heap: str = "768m"
    registry_heap: str = "512m"
    start_timeout_seconds: float = 120.0
    stop_timeout_seconds: float = 30.0

    @property
    def cache_path(self) -> Path:
        """The absolute cache folder (`$LAKEHOUSE_CACHE_DIR`)."""
        return self.cache_dir.expanduser().resolve()
