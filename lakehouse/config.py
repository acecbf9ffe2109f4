"""Stream declarations: what a user writes in `streams.yaml` instead of Python.

Each stream names its topic, bronze table, event-time field, partitioning, batch limits,
trigger thresholds, and its watermark and windows (`lakehouse.windowing.declarations`).
Later sections (schema policies) are added as new optional models here; unknown keys are
rejected so a typo fails at load, naming stream, window and field.
"""

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakehouse.errors import ConfigError
from lakehouse.windowing.declarations import WatermarkSpec, WindowSpec

_WINDOW_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TRANSFORMS = ("identity", "year", "month", "day", "hour", "bucket", "truncate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BatchLimits(_Strict):
    """Upper bounds of one micro-batch (one Iceberg commit)."""

    max_records: int = Field(default=100_000, gt=0)
    max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)


class Trigger(_Strict):
    """When the lag sensor requests a run."""

    min_lag_records: int = Field(default=1_000, gt=0)
    max_wait_seconds: float = Field(default=30.0, gt=0)


class Maintenance(_Strict):
    """Table maintenance knobs (compaction, expiry, orphan removal)."""

    target_file_size_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    small_file_threshold: int = Field(default=16, gt=0)
    snapshot_retention_days: float = Field(default=7.0, gt=0)
    min_snapshots_to_keep: int = Field(default=10, gt=0)
    orphan_min_age_days: float = Field(default=3.0, gt=0)


class Checks(_Strict):
    """Thresholds of the asset checks on the bronze table."""

    max_dead_letter_rate: float = Field(default=0.05, ge=0, le=1)


class SchemaPolicy(_Strict):
    """What a writer schema the bronze table cannot take safely does (docs/schema-evolution.md).

    `pause`: commit every message before the first such one, then stop the stream until the
    table, the policy or the registry is fixed; `dead_letter`: its messages become dead
    letters (`incompatible-schema`); `new_table`: its messages go to `<table>__v<version>`.
    """

    on_incompatible: Literal["pause", "dead_letter", "new_table"] = "pause"


class StreamSpec(_Strict):
    """One Kafka topic ingested into one bronze Iceberg table."""

    name: str
    topic: str
    table: str = ""
    subject: str = ""
    event_time: str
    partition_by: tuple[str, ...] = ()
    batch: BatchLimits = BatchLimits()
    trigger: Trigger = Trigger()
    maintenance: Maintenance = Maintenance()
    checks: Checks = Checks()
    schema_policy: SchemaPolicy = Field(default=SchemaPolicy(), alias="schema")
    description: str = ""
    watermark: WatermarkSpec = WatermarkSpec()
    windows: dict[str, WindowSpec] = Field(default_factory=dict)

    @field_validator("partition_by")
    @classmethod
    def _known_transforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for expr in value:
            parse_partition_expr(expr)
        return value

    @field_validator("windows")
    @classmethod
    def _window_names(cls, value: dict[str, WindowSpec]) -> dict[str, WindowSpec]:
        for name in value:
            if not _WINDOW_NAME.match(name):
                raise ValueError(f"window name {name!r}: use lower_snake_case (it names a table)")
        return value

    def model_post_init(self, __context: Any) -> None:
        if not self.table:
            object.__setattr__(self, "table", f"bronze.{self.name}")
        if not self.subject:
            object.__setattr__(self, "subject", f"{self.topic}-value")
        if "." not in self.table:
            raise ValueError("table must be 'namespace.name'")


class ReferenceSpec(_Strict):
    """A lookup table loaded from a CSV file (`lakehouse.reference`)."""

    csv: str  # relative to the declarations file
    table: str
    description: str = ""

    def csv_path(self, declarations_file: Path) -> Path:
        """The CSV file, found relative to the declarations file."""
        path = Path(self.csv)
        return path if path.is_absolute() else Path(declarations_file).parent / path


class Declarations(_Strict):
    """Everything in `streams.yaml`."""

    dead_letter_table: str = "bronze.dead_letters"
    reference: dict[str, ReferenceSpec] = Field(default_factory=dict)
    streams: dict[str, StreamSpec]


def parse_partition_expr(expr: str) -> tuple[str, str, int | None]:
    """`day(event_time)` → ("day", "event_time", None); `bucket(16, user)` → ("bucket", "user", 16).

    A bare column name is an identity partition.
    """
    text = expr.strip()
    if "(" not in text:
        return ("identity", text, None)
    func, _, rest = text.partition("(")
    func = func.strip().lower()
    if func not in _TRANSFORMS or not rest.endswith(")"):
        raise ValueError(f"unknown partition transform {expr!r}; use one of {_TRANSFORMS}")
    args = [a.strip() for a in rest[:-1].split(",")]
    if func in ("bucket", "truncate"):
        if len(args) != 2 or not args[0].isdigit():
            raise ValueError(f"{expr!r}: expected {func}(N, column)")
        return (func, args[1], int(args[0]))
    if len(args) != 1 or not args[0]:
        raise ValueError(f"{expr!r}: expected {func}(column)")
    return (func, args[0], None)


def parse_declarations(raw: dict[str, Any]) -> Declarations:
    """Validate a parsed YAML document; errors name the stream and the field."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), dict):
        raise ConfigError("stream declarations need a top-level 'streams:' mapping")
    streams: dict[str, StreamSpec] = {}
    for name, body in raw["streams"].items():
        if not isinstance(body, dict):
            raise ConfigError(f"stream {name!r}: expected a mapping of settings")
        try:
            streams[name] = StreamSpec(name=name, **body)
        except ValidationError as exc:
            problems = "; ".join(_describe(err["loc"], err["msg"]) for err in exc.errors())
            raise ConfigError(f"stream {name!r}: {problems}") from exc
    rest = {k: v for k, v in raw.items() if k != "streams"}
    try:
        return Declarations(streams=streams, **rest)
    except ValidationError as exc:
        raise ConfigError(f"stream declarations: {exc}") from exc


def _describe(loc: tuple[int | str, ...], message: str) -> str:
    """`field 'batch.max_records': ...`, or `window 'w', field 'sliding.every': ...`."""
    path = [str(p) for p in loc]
    if len(path) > 2 and path[0] == "windows":
        return f"window {path[1]!r}, field '{'.'.join(path[2:])}': {message}"
    return f"field '{'.'.join(path)}': {message}"


def load_declarations(path: Path) -> Declarations:
    """Read and validate `streams.yaml`."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"stream declarations not found at {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return parse_declarations(raw)
