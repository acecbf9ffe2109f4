"""`cas_transaction`: a commit that loses a race fails instead of being rebuilt by pyiceberg,
with nothing persisted (a real SQL catalog on SQLite)."""

from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from lakehouse.iceberg.compare_and_set import RETRY_PROPERTY, cas_transaction

SCHEMA = pa.schema([pa.field("id", pa.int64())])


def rows(*ids: int) -> pa.Table:
    return pa.table({"id": list(ids)}, schema=SCHEMA)


@pytest.fixture
def catalog(tmp_path: Path) -> SqlCatalog:
    cat = SqlCatalog("cas", uri=f"sqlite:///{tmp_path}/c.db", warehouse=tmp_path.as_uri())
    cat.create_namespace("ns")
    return cat


def make_table(catalog: SqlCatalog, properties: dict[str, str] | None = None) -> Table:
    table = catalog.create_table("ns.t", SCHEMA, properties=properties or {})
    table.append(rows(0))
    return catalog.load_table("ns.t")


def ids(catalog: SqlCatalog) -> list[int]:
    return sorted(catalog.load_table("ns.t").scan().to_arrow()["id"].to_pylist())


def test_pyiceberg_rebuilds_a_stale_append_on_a_table_with_default_retries(
    catalog: SqlCatalog,
) -> None:
    """The behaviour `cas_transaction` exists to avoid (if pyiceberg stopped retrying, the
    next test would prove nothing)."""
    stale = make_table(catalog)
    catalog.load_table("ns.t").append(rows(1))
    tx = stale.transaction()
    tx.append(rows(2))
    tx.set_properties({"decided-on": "stale"})
    tx.commit_transaction()  # rebuilt on the new head and committed
    assert ids(catalog) == [0, 1, 2]


def test_a_stale_transaction_fails_and_commits_nothing(catalog: SqlCatalog) -> None:
    stale = make_table(catalog)
    catalog.load_table("ns.t").append(rows(1))
    tx = cas_transaction(stale)
    tx.append(rows(2))
    tx.set_properties({"decided-on": "stale"})
    with pytest.raises(CommitFailedException):
        tx.commit_transaction()
    table = catalog.load_table("ns.t")
    assert ids(catalog) == [0, 1]
    assert "decided-on" not in table.properties


def test_a_fresh_transaction_commits_and_persists_no_retry_count(catalog: SqlCatalog) -> None:
    table = make_table(catalog)
    tx = cas_transaction(table)
    tx.append(rows(1))
    committed = tx.commit_transaction()
    assert ids(catalog) == [0, 1]
    assert RETRY_PROPERTY not in catalog.load_table("ns.t").properties
    # the returned table is the committed one, usable for the next compare-and-set
    assert committed.metadata_location == catalog.load_table("ns.t").metadata_location
    assert RETRY_PROPERTY not in committed.properties


def test_a_delete_and_an_append_in_one_commit_are_compared_too(catalog: SqlCatalog) -> None:
    """What a silver run does: replace recomputed rows and move its watermark, or nothing."""
    stale = make_table(catalog)
    catalog.load_table("ns.t").append(rows(1))
    tx = cas_transaction(stale)
    tx.delete("id == 0")
    tx.append(rows(10))
    tx.set_properties({"watermark": "10"})
    with pytest.raises(CommitFailedException):
        tx.commit_transaction()
    assert ids(catalog) == [0, 1]


def test_other_engines_retry_counts_are_kept(catalog: SqlCatalog) -> None:
    table = make_table(catalog, {RETRY_PROPERTY: "7"})
    tx = cas_transaction(table)
    tx.append(rows(1))
    tx.commit_transaction()
    assert catalog.load_table("ns.t").properties[RETRY_PROPERTY] == "7"


def test_a_persisted_zero_is_removed_by_the_next_commit(catalog: SqlCatalog) -> None:
    table = make_table(catalog, {RETRY_PROPERTY: "0"})
    tx = cas_transaction(table)
    tx.append(rows(1))
    tx.commit_transaction()
    assert RETRY_PROPERTY not in catalog.load_table("ns.t").properties
