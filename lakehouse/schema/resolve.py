"""Resolve a writer schema against an Iceberg table schema by field id (pure).

Each writer field is matched to a table field the way Avro schema resolution matches a writer
field to a reader field, with the table as the reader: by its current name, by a name the
field had in an earlier table schema (so a writer still on an old version keeps landing in
the renamed column), or through the writer field's `aliases`. Matching is by Iceberg field
id from then on, so a renamed column keeps its id and its data.

The result lists the safe changes the table needs before it can take the writer's data
(adds at any depth, int→long, float→double, decimal precision widened at the same scale,
required→optional, renames through aliases) and every change it cannot take. A writer type
narrower than the table's (int into a long column) needs no change: the projection casts.
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pyiceberg.schema import Schema, index_by_id
from pyiceberg.types import (
    IcebergType,
    ListType,
    MapType,
    NestedField,
    StructType,
)

from lakehouse.avro.arrow_types import arrow_type
from lakehouse.avro.schema import Schema as AvroSchema
from lakehouse.avro.schema import nullable_branch
from lakehouse.errors import DecodeError, SchemaEvolutionError
from lakehouse.iceberg.evolution import widens
from lakehouse.schema.iceberg_types import iceberg_type, same_type

ChangeKind = Literal["added", "promoted", "renamed", "made_optional", "deleted"]
Path = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One safe change, addressed by the table's current column path ("element"/"value" step
    into lists and maps); `field_type` is the new column's type or the promoted type,
    `new_name` a renamed column's new name."""

    kind: ChangeKind
    path: Path
    detail: str
    field_type: IcebergType | None = None
    new_name: str | None = None

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {self.detail}"


@dataclass(frozen=True)
class Incompatibility:
    """A change the table cannot take: the writer's field path, table type, writer type."""

    path: Path
    table_type: str
    writer_type: str

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {self.table_type} → {self.writer_type}"


@dataclass(frozen=True)
class Resolution:
    """What a writer schema needs from a table, and where its fields land."""

    changes: tuple[Change, ...]
    incompatible: tuple[Incompatibility, ...]
    table_names: Mapping[Path, str]
    """Writer field path → the table column's name, once `changes` are applied, wherever the
    two differ (a rename the writer does not know about yet, or one it just made)."""
    absent: tuple[Path, ...] = ()
    """Table columns the writer does not write (their new rows read null)."""

    @property
    def compatible(self) -> bool:
        return not self.incompatible

    def changes_of(self, kind: ChangeKind) -> list[str]:
        return [str(c) for c in self.changes if c.kind == kind]

    def reason(self) -> str:
        """The incompatible changes, one per field, for error messages."""
        return "; ".join(f"{i} is not a safe change" for i in self.incompatible)


def historic_names(schemas: Iterable[Schema]) -> dict[int, set[str]]:
    """Every name each field id has had across the table's schemas."""
    names: dict[int, set[str]] = {}
    for schema in schemas:
        for field_id, nested in index_by_id(schema).items():
            names.setdefault(field_id, set()).add(nested.name)
    return names


def resolve(
    writer: AvroSchema,
    table: Schema,
    names_by_id: Mapping[int, set[str]] | None = None,
    *,
    reserved: Collection[str] = (),
) -> Resolution:
    """Resolve the writer's top-level record against `table`.

    `names_by_id` (from `historic_names` over the table's schemas) lets old writers find
    renamed columns; `reserved` names top-level table columns no writer provides (the Kafka
    metadata columns), left out of `absent`.
    """
    walk = _Walk(names_by_id or {})
    walk.struct(writer, table.as_struct(), (), ())
    absent = tuple(p for p in walk.absent if not (len(p) == 1 and p[0] in reserved))
    return Resolution(tuple(walk.changes), tuple(walk.incompatible), walk.table_names, absent)


@dataclass
class _Walk:
    names_by_id: Mapping[int, set[str]]
    changes: list[Change] = field(default_factory=list)
    incompatible: list[Incompatibility] = field(default_factory=list)
    table_names: dict[Path, str] = field(default_factory=dict)
    absent: list[Path] = field(default_factory=list)

    def struct(self, record: AvroSchema, struct: StructType, tpath: Path, wpath: Path) -> None:
        claimed: set[int] = set()
        for wfield in record.fields:  # type: ignore[attr-defined]
            name: str = wfield.name
            aliases = set(wfield.get_prop("aliases") or ())
            match, rename = self._match(name, aliases, struct, claimed)
            if match is None:
                self._add(wfield.type, (*tpath, name), (*wpath, name))
                continue
            claimed.add(match.field_id)
            here = (*tpath, match.name)
            if rename:
                self.changes.append(Change("renamed", here, f"renamed to {name}", new_name=name))
            elif match.name != name:
                self.table_names[(*wpath, name)] = match.name
            node, nullable = _unwrap(wfield.type)
            if match.required and nullable:
                self.changes.append(Change("made_optional", here, "required → optional"))
            self.compare(node, match.field_type, here, (*wpath, name))
        for tfield in struct.fields:
            if tfield.field_id in claimed:
                continue
            self.absent.append((*tpath, tfield.name))
            if tfield.required:
                self.changes.append(
                    Change("made_optional", (*tpath, tfield.name), "required → optional")
                )

    def _match(
        self, name: str, aliases: set[str], struct: StructType, claimed: set[int]
    ) -> tuple[NestedField | None, bool]:
        """The table field a writer field resolves to, and whether to rename it to `name`."""
        free = [f for f in struct.fields if f.field_id not in claimed]
        for f in free:
            if f.name == name:
                return f, False
        for f in free:
            if name in self.names_by_id.get(f.field_id, ()):
                return f, False
        taken = {f.name for f in struct.fields}
        for f in free:
            if f.name in aliases:
                return f, name not in taken
        for f in free:
            if self.names_by_id.get(f.field_id, set()) & aliases:
                return f, False
        return None, False

    def _add(self, schema: AvroSchema, tpath: Path, wpath: Path) -> None:
        try:
            itype = iceberg_type(arrow_type(_unwrap(schema)[0]))
        except (DecodeError, SchemaEvolutionError):
            self.incompatible.append(Incompatibility(wpath, "(none)", _avro_type(schema)))
            return
        self.changes.append(Change("added", tpath, f"added as {itype}", itype))

    def compare(self, node: AvroSchema, ttype: IcebergType, tpath: Path, wpath: Path) -> None:
        kind = node.type
        if kind in ("record", "error") and isinstance(ttype, StructType):
            self.struct(node, ttype, tpath, wpath)
        elif kind == "array" and isinstance(ttype, ListType):
            items, nullable = _unwrap(node.items)  # type: ignore[attr-defined]
            here = (*tpath, "element")
            if ttype.element_required and nullable:
                self.changes.append(Change("made_optional", here, "required → optional"))
            self.compare(items, ttype.element_type, here, (*wpath, "element"))
        elif kind == "map" and isinstance(ttype, MapType):
            values, nullable = _unwrap(node.values)  # type: ignore[attr-defined]
            here = (*tpath, "value")
            if ttype.value_required and nullable:
                self.changes.append(Change("made_optional", here, "required → optional"))
            self.compare(values, ttype.value_type, here, (*wpath, "value"))
        else:
            self._leaf(node, ttype, tpath, wpath)

    def _leaf(self, node: AvroSchema, ttype: IcebergType, tpath: Path, wpath: Path) -> None:
        try:
            wtype = iceberg_type(arrow_type(node))
        except (DecodeError, SchemaEvolutionError):
            self.incompatible.append(Incompatibility(wpath, str(ttype), _avro_type(node)))
            return
        if same_type(wtype, ttype) or widens(wtype, ttype):
            return
        if widens(ttype, wtype):
            self.changes.append(Change("promoted", tpath, f"{ttype} → {wtype}", wtype))
            return
        self.incompatible.append(Incompatibility(wpath, str(ttype), str(wtype)))


def _unwrap(schema: AvroSchema) -> tuple[AvroSchema, bool]:
    """(T, nullable) for `[null, T]`; the schema itself otherwise."""
    if schema.type == "union":
        branch = nullable_branch(schema)
        if branch is not None:
            return branch[0], True
    return schema, schema.type == "null"


def _avro_type(schema: AvroSchema) -> str:
    name = getattr(schema, "fullname", None)
    return f"{schema.type} {name}" if name else str(schema.type)


def renames_between(old: Schema, new: Schema) -> dict[Path, str]:
    """Column path under `old`'s names → its name in `new`, by field id, where they differ."""
    renames: dict[Path, str] = {}

    def walk(before: IcebergType, after: IcebergType, path: Path) -> None:
        if isinstance(before, StructType) and isinstance(after, StructType):
            now = {f.field_id: f for f in after.fields}
            for f in before.fields:
                if (g := now.get(f.field_id)) is not None:
                    if g.name != f.name:
                        renames[(*path, f.name)] = g.name
                    walk(f.field_type, g.field_type, (*path, f.name))
        elif isinstance(before, ListType) and isinstance(after, ListType):
            walk(before.element_type, after.element_type, (*path, "element"))
        elif isinstance(before, MapType) and isinstance(after, MapType):
            walk(before.value_type, after.value_type, (*path, "value"))

    walk(old.as_struct(), new.as_struct(), ())
    return renames
