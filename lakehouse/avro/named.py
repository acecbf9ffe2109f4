"""Named types used again by name, written out in full for polars.

polars 2.1 `read_avro` fails with `avro-error: OutOfSpec` on any reference to a named type
(record, enum, fixed) by its name. The same schema with each reference replaced by a full
copy of the definition under a fresh name (`Geo`, then `Geo_2`) reads, with the same bytes
per datum and the same values: names play no part in the binary encoding. The Arrow schema
and the exactness proof keep using the writer's own parsed schema.
"""

import json
from typing import Any

from lakehouse.avro.schema import Schema

# Type nodes an expanded schema may have; a reference DAG can double its size per level.
MAX_EXPANDED_NODES = 10_000

_NAMED = ("record", "error", "enum", "fixed")
_NAME_PROPS = ("name", "namespace", "aliases", "fields", "symbols", "items", "values")


def reused_names(schema: Schema) -> list[str]:
    """Full names of the named types that occur more than once (a reference by name)."""
    seen: set[int] = set()
    again: dict[int, str] = {}
    _visit(schema, seen, again)
    return list(again.values())


def _visit(schema: Schema, seen: set[int], again: dict[int, str]) -> None:
    if schema.type in _NAMED:
        if id(schema) in seen:
            again[id(schema)] = schema.fullname  # type: ignore[attr-defined]
            return  # its inside was visited at its definition (or it is recursive)
        seen.add(id(schema))
    for child in _children(schema):
        _visit(child, seen, again)


def _children(schema: Schema) -> list[Schema]:
    kind = schema.type
    if kind in ("record", "error"):
        return [f.type for f in schema.fields]  # type: ignore[attr-defined]
    if kind == "array":
        return [schema.items]  # type: ignore[attr-defined]
    if kind == "map":
        return [schema.values]  # type: ignore[attr-defined]
    if kind == "union":
        return list(schema.schemas)  # type: ignore[attr-defined]
    return []


def expanded_nodes(schema: Schema) -> int:
    """How many type nodes the schema has with every reference written out (not recursive)."""
    memo: dict[int, int] = {}

    def count(node: Schema) -> int:
        key = id(node)
        if key not in memo:
            memo[key] = 1 + sum(count(child) for child in _children(node))
        return memo[key]

    return count(schema)


def inline_named_types(schema: Schema) -> str:
    """The schema's JSON text with every named type defined in full where it is used.

    The first use keeps the full name; later ones get `<full name>_<n>`, unused elsewhere.
    The schema must not be recursive; check `expanded_nodes` first, the text can be large.
    """
    taken: set[str] = set()
    _names(schema, taken, set())
    return json.dumps(_Inliner(taken).emit(schema))


def _names(schema: Schema, taken: set[str], seen: set[int]) -> None:
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if schema.type in _NAMED:
        taken.add(schema.fullname)  # type: ignore[attr-defined]
    for child in _children(schema):
        _names(child, taken, seen)


class _Inliner:
    def __init__(self, taken: set[str]) -> None:
        self.taken = taken
        self.defined: set[int] = set()

    def name(self, schema: Schema) -> str:
        fullname: str = schema.fullname  # type: ignore[attr-defined]
        if id(schema) not in self.defined:
            self.defined.add(id(schema))
            return fullname
        n = 2
        while f"{fullname}_{n}" in self.taken:
            n += 1
        self.taken.add(f"{fullname}_{n}")
        return f"{fullname}_{n}"

    def emit(self, schema: Schema) -> Any:
        kind = schema.type
        if kind == "union":
            return [self.emit(branch) for branch in schema.schemas]  # type: ignore[attr-defined]
        out = {k: v for k, v in schema.props.items() if k not in _NAME_PROPS}
        out["type"] = kind
        if kind in _NAMED:
            out["name"] = self.name(schema)
        if kind in ("record", "error"):
            out["fields"] = [
                {"name": f.name, "type": self.emit(f.type)}
                for f in schema.fields  # type: ignore[attr-defined]
            ]
        elif kind == "enum":
            out["symbols"] = list(schema.symbols)  # type: ignore[attr-defined]
        elif kind == "array":
            out["items"] = self.emit(schema.items)  # type: ignore[attr-defined]
        elif kind == "map":
            out["values"] = self.emit(schema.values)  # type: ignore[attr-defined]
        return out
