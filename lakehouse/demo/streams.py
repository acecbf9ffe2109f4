"""The demo streams and their Avro schemas (the `.avsc` files next to this module)."""

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import fastavro

STREAMS = ("clicks", "payments", "readings")


@dataclass(frozen=True)
class DemoSchema:
    """One version of a demo stream's value schema."""

    stream: str
    version: int
    file: str

    @property
    def text(self) -> str:
        """The schema as written in its `.avsc` file."""
        return _read(self.file)

    @property
    def parsed(self) -> Any:
        """The schema parsed by fastavro (for writing and reading datums)."""
        return _parse(self.file)

    @property
    def fields(self) -> list[str]:
        """Field names, in order."""
        return [field["name"] for field in json.loads(self.text)["fields"]]


SCHEMAS: dict[str, tuple[DemoSchema, ...]] = {
    "clicks": (
        DemoSchema("clicks", 1, "clicks_v1.avsc"),
        DemoSchema("clicks", 2, "clicks_v2.avsc"),
    ),
    "payments": (DemoSchema("payments", 1, "payments.avsc"),),
    "readings": (DemoSchema("readings", 1, "readings.avsc"),),
}

KEY_FIELDS = {"clicks": "user_id", "payments": "card_id", "readings": "device_id"}


def demo_schema(stream: str, version: int = 1) -> DemoSchema:
    """The schema of `stream` at `version` (1-based); ValueError for an unknown one."""
    if stream not in SCHEMAS:
        raise ValueError(f"unknown demo stream {stream!r}; choose one of {STREAMS}")
    versions = SCHEMAS[stream]
    if not 1 <= version <= len(versions):
        raise ValueError(f"demo stream {stream!r} has schema versions 1..{len(versions)}")
    return versions[version - 1]


@cache
def _read(file: str) -> str:
    return resources.files("lakehouse.demo").joinpath("schemas", file).read_text().strip()


@cache
def _parse(file: str) -> Any:
    return fastavro.parse_schema(json.loads(_read(file)))
