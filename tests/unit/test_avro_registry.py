"""RegistrySchemaSource against a real HTTP server on 127.0.0.1 answering what we choose."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from lakehouse.avro import RegistrySchemaSource
from lakehouse.errors import DecodeError, RegistryError, RegistryUnavailableError
from lakehouse.settings import Settings

SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]}


class Registry(ThreadingHTTPServer):
    """Answers GET /schemas/ids/{id} per `mode`; counts requests."""

    daemon_threads = True
    mode = "ok"
    requests = 0
    release = threading.Event()


class Handler(BaseHTTPRequestHandler):
    server: Registry

    def do_GET(self) -> None:
        self.server.requests += 1
        mode = self.server.mode
        if mode == "hang":
            self.server.release.wait(30)
            return
        status, body = {
            "ok": (200, {"schema": json.dumps(SCHEMA)}),
            "protobuf": (200, {"schema": "syntax = 'proto3';", "schemaType": "PROTOBUF"}),
            "404": (404, {"error_code": 40403, "message": "Schema not found"}),
            "401": (401, {"error_code": 401, "message": "Unauthorized"}),
            "500": (500, {"error_code": 50001, "message": "boom"}),
        }[mode]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = Registry(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def source(server: Registry, timeout: float = 5.0) -> RegistrySchemaSource:
    settings = Settings(
        schema_registry_url=f"http://127.0.0.1:{server.server_address[1]}",
        schema_registry_timeout_seconds=timeout,
    )
    return RegistrySchemaSource(settings, attempts=2, max_wait_seconds=0.05)


def test_fetches_once_and_caches(registry: Registry) -> None:
    schemas = source(registry)
    writer = schemas.writer_schema(7)
    assert writer.schema_id == 7 and writer.path == "fast"
    assert writer.arrow.names == ["id"]
    registry.mode = "500"
    assert schemas.writer_schema(7) is writer
    assert registry.requests == 1


def test_404_is_unknown_schema_id(registry: Registry) -> None:
    registry.mode = "404"
    with pytest.raises(DecodeError) as info:
        source(registry).writer_schema(7)
    assert info.value.kind == "unknown-schema-id"


def test_non_avro_schema_is_unknown_schema_id(registry: Registry) -> None:
    registry.mode = "protobuf"
    with pytest.raises(DecodeError) as info:
        source(registry).writer_schema(7)
    assert info.value.kind == "unknown-schema-id"


def test_401_is_a_configuration_error_not_transient(registry: Registry) -> None:
    registry.mode = "401"
    with pytest.raises(RegistryError) as info:
        source(registry).writer_schema(7)
    assert not isinstance(info.value, RegistryUnavailableError)
    assert registry.requests == 1


def test_500_is_retried_then_unavailable(registry: Registry) -> None:
    registry.mode = "500"
    with pytest.raises(RegistryUnavailableError):
        source(registry).writer_schema(7)
    assert registry.requests == 2


def test_connection_refused_is_unavailable(registry: Registry) -> None:
    schemas = source(registry)
    registry.shutdown()
    registry.server_close()
    with pytest.raises(RegistryUnavailableError):
        schemas.writer_schema(7)


def test_hanging_registry_hits_the_timeout(registry: Registry) -> None:
    registry.mode = "hang"
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        source(registry, timeout=0.3).writer_schema(7)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("url", "skips_ca_bundle"),
    [
        ("http://127.0.0.1:8081", True),
        ("http://a:8081,http://b:8081", True),
        ("https://registry.example.com", False),
        ("http://a:8081,https://b:8081", False),
    ],
)
def test_the_ca_bundle_is_loaded_only_for_tls(url: str, skips_ca_bundle: bool) -> None:
    config = Settings(schema_registry_url=url).registry_client_config()
    assert ("ssl.ca.location" in config) is skips_ca_bundle
    client = SchemaRegistryClient(config)  # confluent-kafka accepts the config either way
    assert client is not None
