"""Commit a transaction as a compare-and-set, without changing how other engines commit.

pyiceberg retries a commit that lost a race (`commit.retry.num-retries`, default 4) by
rebuilding its snapshot on the new metadata: a writer that decided what to write from the
table it loaded (offsets, watermarks, recomputed windows) would then commit stale decisions.
A compare-and-set instead fails with `CommitFailedException` when anything committed in
between, and the caller reloads, decides again and retries (`lakehouse.retry`).

pyiceberg reads the retry count from the metadata of the table the transaction was opened
on, in memory. So the transaction is opened on a copy of the loaded table whose in-memory
properties say `commit.retry.num-retries=0`; nothing of it is written to the table, and
Spark, Trino or Java writers of the same table keep their automatic retries. Tables written
by earlier versions of this project carry the property persisted as "0": the next commit
through here removes it. docs/exactly-once.md has the protocol.
"""

from pyiceberg.table import Table, TableProperties, Transaction

from lakehouse.iceberg.view_transaction import ViewTransaction

RETRY_PROPERTY = TableProperties.COMMIT_NUM_RETRIES
_NO_RETRY = "0"


def cas_transaction(table: Table) -> Transaction:
    """A transaction on `table` whose `commit_transaction()` is a compare-and-set.

    It fails with `CommitFailedException` (and commits nothing) if another commit moved the
    branch since `table` was loaded; pyiceberg does not retry it. What it compares is what
    its updates assert: any snapshot (append, overwrite, delete, even an empty fast append)
    asserts the branch head it was built on; a schema change asserts the schema id; bare
    property updates assert nothing. The table's persisted properties are untouched, except
    that a `commit.retry.num-retries=0` left by earlier versions is removed in this commit.
    """
    properties = table.metadata.properties
    view = Table(
        table.name(),
        table.metadata.model_copy(update={"properties": {**properties, RETRY_PROPERTY: _NO_RETRY}}),
        table.metadata_location,
        table.io,
        table.catalog,
        table.config,
    )
    transaction = ViewTransaction(view)
    if properties.get(RETRY_PROPERTY) == _NO_RETRY:
        transaction.remove_properties(RETRY_PROPERTY)
    return transaction
