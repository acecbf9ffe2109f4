"""Loading the table a maintenance job works on."""

from collections.abc import Callable

from pyiceberg.table import Table

TableOrLoader = Table | Callable[[], Table]
"""A table (refreshed before use) or a function that loads it afresh."""


def load(table_or_loader: TableOrLoader) -> Table:
    """The table at its newest committed metadata."""
    return table_or_loader() if callable(table_or_loader) else table_or_loader.refresh()
