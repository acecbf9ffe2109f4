"""Thin Dagster sensors over `lakehouse`."""
