"""lakehouse: exactly-once Kafka → Iceberg ingestion; the library behind the Dagster assets.

This package never imports dagster (see CONTRIBUTING.md).
"""

__version__ = "0.1.0"
