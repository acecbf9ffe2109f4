"""The one Dagster resource: settings for the library, from dagster.yaml/run config or env."""

import dagster as dg

from lakehouse.config import Declarations, load_declarations
from lakehouse.settings import Settings


class LakehouseResource(dg.ConfigurableResource):
    """Addresses and paths; anything left unset comes from `LAKEHOUSE_*` environment variables."""

    home: str | None = None
    kafka_bootstrap_servers: str | None = None
    schema_registry_url: str | None = None
    streams_file: str | None = None
    consumer_group: str | None = None

    def settings(self) -> Settings:
        """Library settings: explicit resource config over the environment."""
        fields = (
            "home",
            "kafka_bootstrap_servers",
            "schema_registry_url",
            "streams_file",
            "consumer_group",
        )
        overrides = {name: getattr(self, name) for name in fields if getattr(self, name)}
        return Settings(**overrides)

    def declarations(self) -> Declarations:
        """The stream declarations this deployment runs."""
        return load_declarations(self.settings().streams_file)
