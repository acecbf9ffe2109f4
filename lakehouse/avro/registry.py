"""Where writer schemas come from: the `SchemaSource` seam and the Schema Registry behind it."""

import threading
from typing import Any, Protocol

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx as _client_httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from lakehouse.avro.writer_schema import WriterSchema
from lakehouse.errors import DecodeError, RegistryError, RegistryUnavailableError
from lakehouse.settings import Settings

# confluent-kafka 2.16 uses httpx2 when installed, else httpx: catch whichever it uses.
_TRANSPORT_ERRORS = (_client_httpx.TransportError,)
_NOT_FOUND_CODES = {40403}  # schema not found; 40401/40402 are subject/version lookups


class SchemaSource(Protocol):
    """Gives the writer schema of a schema id, or raises `DecodeError('unknown-schema-id')`."""

    def writer_schema(self, schema_id: int) -> WriterSchema:
        """The writer schema registered under `schema_id`."""
        ...


class _Transient(Exception):
    """A registry failure worth retrying (connection, timeout, 5xx, 408, 429)."""


class RegistrySchemaSource:
    """A `SchemaSource` over confluent-kafka's `SchemaRegistryClient`, caching parsed schemas.

    404 (40403) → `DecodeError('unknown-schema-id')`; 401/403 → `RegistryError`;
    connection errors, timeouts, 5xx → retried briefly, then `RegistryUnavailableError`.
    """

    def __init__(self, settings: Settings, *, attempts: int = 3, max_wait_seconds: float = 2.0):
        config = dict(settings.registry_client_config())
        config["max.retries"] = 0  # retries are ours (tenacity), so their budget is known
        self._client = SchemaRegistryClient(config)
        self._cache: dict[int, WriterSchema | DecodeError] = {}
        self._lock = threading.Lock()
        self._fetch = retry(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=max_wait_seconds),
            reraise=True,
        )(self._fetch_once)

    def writer_schema(self, schema_id: int) -> WriterSchema:
        """The parsed writer schema; fetched once per id (failures to parse cached too)."""
        with self._lock:
            cached = self._cache.get(schema_id)
        if cached is None:
            try:
                cached = self._load(schema_id)
            except DecodeError as exc:
                cached = exc
            with self._lock:
                self._cache[schema_id] = cached
        if isinstance(cached, DecodeError):
            raise cached
        return cached

    def _load(self, schema_id: int) -> WriterSchema:
        try:
            schema = self._fetch(schema_id)
        except _Transient as exc:
            raise RegistryUnavailableError(f"schema registry unavailable: {exc}") from exc
        kind = schema.schema_type or "AVRO"
        if kind != "AVRO":
            raise DecodeError("unknown-schema-id", f"schema {schema_id} is {kind}, not AVRO")
        if schema.references:
            raise RegistryError(f"schema {schema_id} uses references, which are not supported")
        return WriterSchema.from_text(schema_id, schema.schema_str)

    def _fetch_once(self, schema_id: int) -> Any:
        try:
            return self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404 or exc.error_code in _NOT_FOUND_CODES:
                raise DecodeError("unknown-schema-id", f"schema id {schema_id} not found") from exc
            if status in (401, 403):
                raise RegistryError(
                    f"registry refused access ({status}): check credentials"
                ) from exc
            if status in (408, 429) or status >= 500:
                raise _Transient(f"HTTP {status}: {exc.error_message}") from exc
            raise RegistryError(
                f"registry error {status}/{exc.error_code}: {exc.error_message}"
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc


def latest_writer_schema(settings: Settings, subject: str) -> WriterSchema | None:
    """The latest schema registered under `subject`, or None if the subject has none."""
    client = SchemaRegistryClient(dict(settings.registry_client_config()))
    try:
        registered = client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise RegistryError(f"registry error reading subject {subject!r}: {exc}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise RegistryUnavailableError(f"schema registry unavailable: {exc}") from exc
    if registered.schema_id is None or registered.schema.schema_str is None:
        return None
    return WriterSchema.from_text(registered.schema_id, registered.schema.schema_str)
