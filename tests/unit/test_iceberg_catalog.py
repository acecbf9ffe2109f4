"""Catalog loading and table creation against real SQLite catalogs."""

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.transforms import BucketTransform, DayTransform, IdentityTransform

from lakehouse.errors import ConfigError
from lakehouse.iceberg.catalog import ensure_table, load_catalog, table_or_none
from lakehouse.settings import Settings

SCHEMA = pa.schema(
    [
        ("user", pa.string()),
        ("event_time", pa.timestamp("ns", tz="UTC")),
        ("n", pa.field("n", pa.int64(), nullable=False).type),
    ]
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(__import__("os").environ):
        if key.upper().startswith("PYICEBERG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PYICEBERG_HOME", str(tmp_path / "no-config-here"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_default_is_sqlite_under_home(clean_env: Path) -> None:
    settings = Settings(home=clean_env / "lh")
    catalog = load_catalog(settings)
    assert isinstance(catalog, SqlCatalog) and catalog.name == "lakehouse"
    assert (clean_env / "lh" / "iceberg" / "catalog.db").exists()
    assert (clean_env / "lh" / "iceberg" / "warehouse").is_dir()
    table = ensure_table(catalog, "bronze.t", SCHEMA)
    assert table.location().startswith((clean_env / "lh" / "iceberg" / "warehouse").as_uri())


def test_user_config_from_env_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = clean_env / "elsewhere"
    other.mkdir()
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKEHOUSE__URI", f"sqlite:///{other}/c.db")
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKEHOUSE__WAREHOUSE", (other / "wh").as_uri())
    catalog = load_catalog(Settings(home=clean_env / "lh"))
    assert (other / "c.db").exists()
    assert not (clean_env / "lh" / "iceberg" / "catalog.db").exists()
    assert catalog.properties["warehouse"] == (other / "wh").as_uri()


def test_user_config_from_yaml_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = clean_env / "conf"
    conf.mkdir()
    (conf / ".pyiceberg.yaml").write_text(
        f"catalog:\n  lakehouse:\n    uri: sqlite:///{conf}/y.db\n"
        f"    warehouse: {(conf / 'wh').as_uri()}\n"
    )
    monkeypatch.setenv("PYICEBERG_HOME", str(conf))
    load_catalog(Settings(home=clean_env / "lh"))
    assert (conf / "y.db").exists()


def test_broken_user_config_is_a_config_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYICEBERG_CATALOG__LAKEHOUSE__URI", "nonsense://user:canary-pw@host")
    with pytest.raises(ConfigError) as err:
        load_catalog(Settings(home=clean_env / "lh"))
    assert "canary-pw" not in str(err.value)
    assert err.value.__cause__ is None  # the original message (with the URI) is not chained


def test_ensure_table_partitioning_properties_and_optional_fields(tmp_path: Path) -> None:
    catalog = SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    table = ensure_table(
        catalog,
        "bronze.events",
        SCHEMA,
        ["day(event_time)", "bucket(16, user)", "n"],
        {"write.target-file-size-bytes": "1000", "commit.retry.num-retries": "7"},
    )
    spec = table.spec()
    assert [type(f.transform) for f in spec.fields] == [
        DayTransform,
        BucketTransform,
        IdentityTransform,
    ]
    assert len(table.metadata.partition_specs) == 1  # created partitioned, not evolved to it
    # what the caller asks for other engines' retries is kept; the project never sets it
    assert table.properties["commit.retry.num-retries"] == "7"
    assert table.properties["write.target-file-size-bytes"] == "1000"
    assert all(f.optional for f in table.schema().fields)
    assert str(table.schema().find_field("event_time").field_type) == "timestamptz"


def test_ensure_table_returns_the_existing_table(tmp_path: Path) -> None:
    catalog = SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    first = ensure_table(catalog, "bronze.events", SCHEMA, ["day(event_time)"])
    again = ensure_table(catalog, "bronze.events", pa.schema([("x", pa.int8())]))
    assert again.metadata.table_uuid == first.metadata.table_uuid
    assert table_or_none(catalog, "bronze.missing") is None


def test_bad_partition_column_is_a_config_error(tmp_path: Path) -> None:
    catalog = SqlCatalog("lakehouse", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    with pytest.raises(ConfigError, match="nope"):
        ensure_table(catalog, "bronze.events", SCHEMA, ["day(nope)"])
    with pytest.raises(ConfigError, match="day"):
        ensure_table(catalog, "bronze.events", SCHEMA, ["day(user)"])


def test_concurrent_creation_ends_with_one_table(tmp_path: Path) -> None:
    uri, wh = f"sqlite:///{tmp_path}/c.db", tmp_path.as_uri()
    SqlCatalog("lakehouse", uri=uri, warehouse=wh)  # catalog tables exist before the race
    barrier = threading.Barrier(6)
    uuids: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        catalog = SqlCatalog("lakehouse", uri=uri, warehouse=wh)
        barrier.wait()
        try:
            uuids.append(str(ensure_table(catalog, "bronze.race", SCHEMA).metadata.table_uuid))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(uuids)) == 1 and len(uuids) == 6
