"""The Iceberg catalog and table creation: the one place that knows how to reach the catalog.

The catalog is configured the pyiceberg way (`.pyiceberg.yaml` or
`PYICEBERG_CATALOG__<NAME>__*`). Only when nothing is configured for `settings.catalog_name`
does the project fall back to a SQL catalog on SQLite under `$LAKEHOUSE_HOME/iceberg`.
"""

import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.catalog import load_catalog as _pyiceberg_load_catalog
from pyiceberg.catalog.sql import SqlCatalog  # noqa: F401  (the default: imported with this module, not in a run)
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    NotInstalledError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import (
    BucketTransform,
    DayTransform,
    HourTransform,
    IdentityTransform,
    MonthTransform,
    Transform,
    TruncateTransform,
    YearTransform,
)
from pyiceberg.utils.config import Config
from sqlalchemy.exc import IntegrityError, OperationalError

from lakehouse.config import parse_partition_expr
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.iceberg.evolution import normalize_schema
from lakehouse.settings import Settings

T = TypeVar("T")

#: Properties every table gets unless the caller gives others.
DEFAULT_TABLE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    # pyiceberg sizes files by in-memory Arrow bytes (parquet ends up 3-10x smaller).
    "write.target-file-size-bytes": str(512 * 1024 * 1024),
    "write.parquet.compression-codec": "zstd",
}


def load_catalog(settings: Settings) -> Catalog:
    """The catalog named `settings.catalog_name`, from pyiceberg config or the local default."""
    name = settings.catalog_name
    user_config = Config().get_catalog_config(name)  # read now: env may have changed
    if user_config:
        properties = cast(dict[str, str], dict(user_config))
    else:
        (settings.home_dir / "iceberg" / "warehouse").mkdir(parents=True, exist_ok=True)
        properties = default_catalog_properties(settings)
    try:
        return retry_locked(lambda: _pyiceberg_load_catalog(name, **properties))
    except (ValueError, NotInstalledError, ImportError) as exc:
        message = _redact(str(exc), properties)
        raise ConfigError(f"Iceberg catalog {name!r} cannot be loaded: {message}") from None
    except OperationalError as exc:
        raise ConfigError(f"Iceberg catalog {name!r}: catalog database unusable") from exc


_SECRET_HINTS = ("uri", "password", "secret", "token", "credential", "key")


def _redact(message: str, properties: Mapping[str, str]) -> str:
    """`message` without the values of properties that may hold secrets (a SQL URI may)."""
    for key, value in properties.items():
        if value and any(h in key.lower() for h in _SECRET_HINTS):
            message = message.replace(str(value), "***")
    return message


def default_catalog_properties(settings: Settings) -> dict[str, str]:
    """The SQLite catalog used when nothing is configured (for tools and docs)."""
    root = settings.home_dir / "iceberg"
    return {
        "type": "sql",
        "uri": f"sqlite:///{root / 'catalog.db'}",
        "warehouse": (root / "warehouse").as_uri(),
    }


def table_or_none(catalog: Catalog, identifier: str) -> Table | None:
    """The table, or None if it does not exist yet."""
    try:
        return retry_locked(lambda: catalog.load_table(identifier))
    except NoSuchTableError:
        return None


def ensure_table(
    catalog: Catalog,
    identifier: str,
    arrow_schema: pa.Schema,
    partition_by: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> Table:
    """Load the table, creating its namespace and itself on first use.

    Race-safe: when two processes create it at once, both return the one table. The schema
    is made all-optional (bronze keeps what it gets), `timestamp[ns]` becomes `[us]`, and
    `partition_by` takes expressions like `day(event_time)`, `bucket(16, user)` or `user`.
    An existing table is returned as it is; schema changes happen at commit time.
    """
    if (table := table_or_none(catalog, identifier)) is not None:
        return table
    namespace = identifier.rsplit(".", 1)[0] if "." in identifier else ""
    if not namespace:
        raise ConfigError(f"table {identifier!r} needs a namespace ('namespace.name')")
    _ensure_namespace(catalog, namespace)
    props = {**DEFAULT_TABLE_PROPERTIES, **(properties or {})}
    schema = normalize_schema(arrow_schema)
    try:
        # A staged create assigns the field ids the partition spec refers to.
        staged = catalog.create_table_transaction(identifier, schema, properties=props)
        iceberg_schema = staged.table_metadata.schema()
        spec = partition_spec(iceberg_schema, partition_by)
        create = catalog.create_table_transaction(
            identifier, iceberg_schema, partition_spec=spec, properties=props
        )
        retry_locked(create.commit_transaction)
    except (TableAlreadyExistsError, CommitFailedException, IntegrityError):
        pass  # another process won the race; its table is the table
    except ValueError as exc:
        raise ConfigError(f"table {identifier!r}: {exc}") from exc
    try:
        return retry_locked(lambda: catalog.load_table(identifier))
    except NoSuchTableError as exc:
        raise LakehouseError(f"table {identifier!r} was created but cannot be loaded") from exc


def partition_spec(schema: Schema, partition_by: Sequence[str]) -> PartitionSpec:
    """A spec from expressions such as `day(event_time)`; field ids start at 1000."""
    fields = []
    for i, expr in enumerate(partition_by):
        func, column, arg = parse_partition_expr(expr)
        try:
            source = schema.find_field(column)
        except ValueError as exc:
            raise ConfigError(f"partition {expr!r}: no column {column!r} in the schema") from exc
        transform = _transform(func, arg)
        if not transform.can_transform(source.field_type):
            raise ConfigError(f"partition {expr!r}: cannot apply {func} to {source.field_type}")
        name = column if func == "identity" else f"{column}_{func}"
        fields.append(
            PartitionField(
                source_id=source.field_id, field_id=1000 + i, transform=transform, name=name
            )
        )
    return PartitionSpec(*fields)


def _transform(func: str, arg: int | None) -> Transform[Any, Any]:
    simple: dict[str, Transform[Any, Any]] = {
        "identity": IdentityTransform(),
        "year": YearTransform(),
        "month": MonthTransform(),
        "day": DayTransform(),
        "hour": HourTransform(),
    }
    if func in simple:
        return simple[func]
    if func == "bucket" and arg is not None:
        return BucketTransform(num_buckets=arg)
    if func == "truncate" and arg is not None:
        return TruncateTransform(width=arg)
    raise ConfigError(f"unknown partition transform {func!r}")


def _ensure_namespace(catalog: Catalog, namespace: str) -> None:
    # Another process may create it between the check and the insert: that is fine.
    with contextlib.suppress(NamespaceAlreadyExistsError, IntegrityError):
        retry_locked(lambda: catalog.create_namespace_if_not_exists(namespace))


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's transient 'database is locked' / 'busy' errors."""
    text = str(exc).lower()
    return isinstance(exc, OperationalError) and ("locked" in text or "busy" in text)


def retry_locked(fn: Callable[[], T], budget_seconds: float = 60.0) -> T:
    """Call `fn`, retrying while the catalog database is locked, for up to `budget_seconds`."""
    deadline = time.monotonic() + budget_seconds
    delay = 0.05
    while True:
        try:
            return fn()
        except OperationalError as exc:
            if not is_locked(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 1.0)
