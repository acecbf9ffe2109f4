"""Where writer schemas come from: the `SchemaSource` seam and the Schema Registry behind it."""

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SubjectVersion:
    """One registered version of a subject."""

    subject: str
    version: int
    schema_id: int
    text: str

    def writer_schema(self) -> WriterSchema:
        return WriterSchema.from_text(self.schema_id, self.text)


def _client(settings: Settings) -> SchemaRegistryClient:
    """A fresh client: confluent-kafka's caches the latest version, which a poller must not."""
    return SchemaRegistryClient(dict(settings.registry_client_config()))


@contextlib.contextmanager
def _asking(what: str) -> Iterator[None]:
    """Registry failures as lakehouse errors (404 is handled by the callers)."""
    try:
        yield
    except SchemaRegistryError as exc:
        if exc.http_status_code in (401, 403):
            raise RegistryError(f"registry refused access ({exc.http_status_code})") from exc
        if exc.http_status_code in (408, 429) or exc.http_status_code >= 500:
            raise RegistryUnavailableError(f"schema registry unavailable {what}: {exc}") from exc
        raise RegistryError(f"registry error {what}: {exc}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise RegistryUnavailableError(f"schema registry unavailable {what}: {exc}") from exc


def _not_found(exc: SchemaRegistryError) -> bool:
    return exc.http_status_code == 404


def latest_version(settings: Settings, subject: str) -> SubjectVersion | None:
    """The subject's latest version (one request), or None if it has none."""
    with _asking(f"reading subject {subject!r}"):
        try:
            registered = _client(settings).get_latest_version(subject)
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return None
            raise
    if registered.schema_id is None or registered.schema.schema_str is None:
        return None
    return SubjectVersion(
        subject, int(registered.version or 0), registered.schema_id, registered.schema.schema_str
    )


def subject_versions(settings: Settings, subject: str) -> list[SubjectVersion]:
    """Every live version of the subject, oldest first ([] if it has none)."""
    client = _client(settings)
    with _asking(f"reading subject {subject!r}"):
        try:
            numbers = client.get_versions(subject)
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return []
            raise
        found = []
        for number in sorted(numbers):
            registered = client.get_version(subject, number)
            if registered.schema_id is not None and registered.schema.schema_str is not None:
                found.append(
                    SubjectVersion(
                        subject, number, registered.schema_id, registered.schema.schema_str
                    )
                )
    return found


def schema_versions(settings: Settings, subject: str, schema_id: int) -> list[int]:
    """The versions of `subject` registered with `schema_id` ([] if none)."""
    with _asking(f"reading the versions of schema id {schema_id}"):
        try:
            pairs = _client(settings).get_schema_versions(schema_id, subject_name=subject)
        except SchemaRegistryError as exc:
            if _not_found(exc):
                return []
            raise
    return sorted(p.version for p in pairs if p.subject == subject and p.version is not None)
