"""A table's schema history: what each Iceberg schema changed, by field id, and which writer
schema (subject version) caused it, for the schema asset's metadata."""

from dataclasses import dataclass

from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import IcebergType, ListType, MapType, NestedField, StructType

from lakehouse.schema.evolve import schema_sources
from lakehouse.schema.resolve import Change, Path


def schema_diff(before: Schema, after: Schema) -> list[Change]:
    """The changes from `before` to `after`, matched by field id ("deleted" for a column the
    table's owner removed; the resolver itself never deletes)."""
    changes: list[Change] = []

    def fields(t: IcebergType) -> dict[int, NestedField]:
        return {f.field_id: f for f in t.fields} if isinstance(t, StructType) else {}

    def walk(old: IcebergType, new: IcebergType, path: Path) -> None:
        if isinstance(old, StructType) and isinstance(new, StructType):
            was, now = fields(old), fields(new)
            for field_id, f in now.items():
                g = was.get(field_id)
                here = (*path, f.name)
                if g is None:
                    changes.append(Change("added", here, f"added as {f.field_type}"))
                    continue
                if g.name != f.name:
                    changes.append(Change("renamed", (*path, g.name), f"renamed to {f.name}"))
                if g.required and not f.required:
                    changes.append(Change("made_optional", here, "required → optional"))
                if g.field_type.is_primitive and g.field_type != f.field_type:
                    detail = f"{g.field_type} → {f.field_type}"
                    changes.append(Change("promoted", here, detail))
                walk(g.field_type, f.field_type, here)
            for field_id, g in was.items():
                if field_id not in now:
                    changes.append(Change("deleted", (*path, g.name), "deleted"))
        elif isinstance(old, ListType) and isinstance(new, ListType):
            walk(old.element_type, new.element_type, (*path, "element"))
        elif isinstance(old, MapType) and isinstance(new, MapType):
            walk(old.value_type, new.value_type, (*path, "value"))

    walk(before.as_struct(), after.as_struct(), ())
    return changes


@dataclass(frozen=True)
class HistoryEntry:
    """One Iceberg schema of the table."""

    schema_id: int
    current: bool
    changes: tuple[Change, ...]
    source: str  # "<subject> v<N> (schema id <id>)", or "" when not changed through here
    applied_by: str
    applied_at: str
    columns: int


def schema_history(table: Table) -> list[HistoryEntry]:
    """Every schema of the table, oldest first, with what it changed and why."""
    sources = schema_sources(table)
    schemas = sorted(table.schemas().values(), key=lambda s: s.schema_id)
    current = table.schema().schema_id
    entries = []
    previous: Schema | None = None
    for schema in schemas:
        source = sources.get(schema.schema_id)
        diff = tuple(schema_diff(previous, schema)) if previous is not None else ()
        entries.append(
            HistoryEntry(
                schema.schema_id,
                schema.schema_id == current,
                diff,
                source.label() if source else "",
                source.applied_by if source else "",
                source.applied_at if source else "",
                len(schema.fields),
            )
        )
        previous = schema
    return entries


def caused_by(history: list[HistoryEntry], writer: str) -> HistoryEntry | None:
    """The latest schema a writer schema caused (`writer` as in `HistoryEntry.source`)."""
    return next((e for e in reversed(history) if e.source == writer), None)
