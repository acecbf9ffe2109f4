"""Thin Dagster shells over `lakehouse`: one module per kind of asset."""
