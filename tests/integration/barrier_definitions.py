"""The project's Dagster definitions, with the test barrier in ingestion's commit."""

from definitions import defs
from tests.integration.barrier import install

install()

__all__ = ["defs"]
