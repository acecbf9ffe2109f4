"""Event-time windows over bronze: declarations, window ranges, the watermark and late
events (pure, tested without Iceberg), the computation in Polars, and the silver pass that
runs it against Iceberg (docs/windows.md)."""
