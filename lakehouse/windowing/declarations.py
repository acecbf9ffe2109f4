"""Window and watermark declarations: the `watermark:` and `windows:` blocks of a stream.

Validated when `streams.yaml` loads (unknown keys rejected, durations checked, `every` not
larger than `size`, `where` and every aggregate parsed by Polars' SQL parser, each aggregate
an aggregation). What needs the stream's columns (does `price` exist?) is checked by
`lakehouse.windowing.compute.WindowPlan` against the bronze and lookup schemas, with the
same naming of stream, window and field. docs/windows.md describes the syntax.
"""

import re
from typing import Annotated, Any, Literal

import polars as pl
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lakehouse.windowing.durations import parse_duration_us

#: The Iceberg table that records late events of every window declaration.
LATE_EVENTS_TABLE = "silver.late_events"
#: Columns every silver table has besides the group keys and the aggregates.
RESERVED_COLUMNS = ("window_start", "window_end", "revision", "final", "updated_at")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def sql_expression(text: str) -> pl.Expr:
    """`text` parsed by Polars' SQL parser; ValueError with Polars' reason otherwise."""
    try:
        return pl.sql_expr(text)
    except Exception as exc:  # polars raises SQLInterfaceError / SQLSyntaxError / ComputeError
        raise ValueError(f"{text!r} is not a SQL expression Polars accepts: {exc}") from None


def _check_aggregation(text: str) -> str:
    """`text` parses and gives one value per group. Types are unknown here, so columns are
    tried as floats; an expression that needs other types is checked again by the plan."""
    expr = sql_expression(text)
    roots = expr.meta.root_names()
    frame = pl.LazyFrame(schema={**dict.fromkeys(roots, pl.Float64), "__key": pl.Int64})
    try:
        dtype = frame.group_by("__key").agg(expr.alias("out")).collect_schema()["out"]
    except Exception:
        return text  # needs the real column types: WindowPlan checks it
    if isinstance(dtype, pl.List):
        raise ValueError(f"{text!r} is not an aggregate (one value per window and group)")
    return text


def _duration(value: Any) -> str:
    parse_duration_us(value)
    return str(value).strip()


def _optional_duration(value: Any) -> str | None:
    return None if value is None else _duration(value)


class WatermarkSpec(_Strict):
    """How a stream's watermark follows its event times (docs/windows.md, "The watermark")."""

    max_out_of_orderness: str = "30s"
    idle_partition_timeout: str = "60s"
    max_future_skew: str = "1h"

    _durations = field_validator(
        "max_out_of_orderness", "idle_partition_timeout", "max_future_skew", mode="before"
    )(_duration)

    @property
    def out_of_orderness_us(self) -> int:
        """Subtracted from the slowest active partition's max event time."""
        return parse_duration_us(self.max_out_of_orderness)

    @property
    def idle_timeout_us(self) -> int:
        """A partition with no record for this long stops holding the watermark back."""
        return parse_duration_us(self.idle_partition_timeout)

    @property
    def future_skew_us(self) -> int:
        """An event time further than this ahead of its Kafka timestamp is 'from the future'."""
        return parse_duration_us(self.max_future_skew)


class Sliding(_Strict):
    """Windows of `size`, one starting every `every` (both aligned to the epoch, UTC)."""

    size: str
    every: str

    _durations = field_validator("size", "every", mode="before")(_duration)

    @field_validator("every")
    @classmethod
    def _every_fits_size(cls, every: str, info: ValidationInfo) -> str:
        size = info.data.get("size")
        if parse_duration_us(every) == 0:
            raise ValueError("every must be more than 0s")
        if size is not None and parse_duration_us(every) > parse_duration_us(size):
            raise ValueError(f"every ({every}) is larger than size ({size})")
        return every


class JoinSpec(_Strict):
    """A lookup table joined to each event (left join) before `where` and `aggregate`."""

    table: str
    on: str
    columns: tuple[str, ...] | None = None  # the lookup's columns to add; default all

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        """YAML 1.1 (PyYAML) reads a bare `on:` key as the boolean true."""
        if isinstance(value, dict) and True in value and "on" not in value:
            value = {("on" if k is True else k): v for k, v in value.items()}
        return value

    @field_validator("table")
    @classmethod
    def _qualified(cls, value: str) -> str:
        if value.count(".") != 1:
            raise ValueError(f"table {value!r} must be 'namespace.name'")
        return value


class WindowChecks(_Strict):
    """Thresholds of the warning checks on a silver asset."""

    max_late_event_rate: float = Field(default=0.05, ge=0, le=1)
    max_watermark_delay: str = "10m"

    _durations = field_validator("max_watermark_delay", mode="before")(_duration)


class WindowSpec(_Strict):
    """One window declaration: which windows, which rows, which aggregates, how late is too late."""

    sliding: Sliding | None = None
    tumbling: str | None = None
    where: str | None = None
    group_by: tuple[str, ...] = ()
    aggregate: dict[str, Annotated[str, AfterValidator(_check_aggregation)]]
    allowed_lateness: str = "1d"
    emit: Literal["final", "updates"] = "final"
    join: JoinSpec | None = None
    checks: WindowChecks = WindowChecks()

    _durations = field_validator("tumbling", "allowed_lateness", mode="before")(_optional_duration)

    @field_validator("where")
    @classmethod
    def _where_parses(cls, value: str | None) -> str | None:
        if value is not None:
            sql_expression(value)
        return value

    @field_validator("aggregate")
    @classmethod
    def _aggregates(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("declare at least one aggregate (name: SQL aggregate)")
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"{name!r}: output names are lower_snake_case")
        return value

    @model_validator(mode="after")
    def _shape(self) -> "WindowSpec":
        if (self.sliding is None) == (self.tumbling is None):
            raise ValueError("declare one of 'sliding: {size, every}' or 'tumbling: <size>'")
        if self.tumbling is not None and parse_duration_us(self.tumbling) == 0:
            raise ValueError("tumbling: the size must be more than 0s")
        clash = set(self.aggregate) & set(self.group_by)
        reserved = (set(self.aggregate) | set(self.group_by)) & set(RESERVED_COLUMNS)
        if clash or reserved:
            raise ValueError(
                f"output column names clash: {sorted(clash | reserved)} "
                f"(reserved: {', '.join(RESERVED_COLUMNS)})"
            )
        return self

    @property
    def size_us(self) -> int:
        """Length of one window."""
        return parse_duration_us(self.sliding.size if self.sliding else self.tumbling or "")

    @property
    def every_us(self) -> int:
        """Distance between two window starts (the size, for tumbling windows)."""
        return parse_duration_us(self.sliding.every) if self.sliding else self.size_us

    @property
    def allowed_lateness_us(self) -> int:
        """A closed window takes corrections while the watermark is before end + this."""
        return parse_duration_us(self.allowed_lateness)


def silver_table(stream: str, window: str) -> str:
    """The Iceberg table of a window declaration: `silver.<stream>_<window>`."""
    return f"silver.{stream}_{window}"
