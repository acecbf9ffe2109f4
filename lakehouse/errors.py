"""The project's error hierarchy: third-party failures are re-raised as one of these."""


class LakehouseError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(LakehouseError):
    """A setting or stream declaration is invalid; the message names the stream and field."""


class StackError(LakehouseError):
    """The local stack cannot be started, reached or stopped."""


class MissingToolError(StackError):
    """A program the local stack needs (Java 17+, Maven) is not installed."""


class RegistryError(LakehouseError):
    """The schema registry answered with an error or could not be reached."""


class RegistryUnavailableError(RegistryError):
    """Transient: the registry is down or timed out. Never a reason to dead-letter."""


class DecodeError(LakehouseError):
    """A message cannot be decoded; it goes to the dead-letter table with `kind`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class CommitConflictError(LakehouseError):
    """An Iceberg commit lost a race (the branch moved); reload and try again."""


class OffsetGapError(LakehouseError):
    """A batch would leave a gap or go backwards in a table's committed offsets."""


class SchemaEvolutionError(LakehouseError):
    """A writer schema changes the table in a way Iceberg cannot take without a policy."""


class StreamPausedError(LakehouseError):
    """A stream stopped at a writer schema its table cannot take (policy `pause`).

    Every message before the first incompatible one is committed; the rest wait in Kafka
    until the table, the policy or the registry is changed (docs/schema-evolution.md).
    """
