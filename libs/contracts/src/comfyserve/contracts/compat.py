"""Backward-compatibility check between two JSON Schemas of one message.

A change is compatible when it is additive: properties may be added as long as
they are optional, and enum values may be added. Anything else (a removed
property, a changed type or constraint, a field that becomes required, a
removed enum value) is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["breaking_changes", "event_json_schema"]

Schema = Mapping[str, Any]

# Keys that only document a schema; changing them never breaks a consumer.
_DOC_KEYS = frozenset({"title", "description", "default", "examples", "deprecated"})
# Keys compared recursively or by the dedicated rules below.
_STRUCT_KEYS = frozenset(
    {"$ref", "$defs", "properties", "required", "enum", "items", "anyOf", "oneOf"}
)
_ADDITIONAL = "additionalProperties"


class _Walker:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_defs: Schema = old_root.get("$defs", {})
        self.new_defs: Schema = new_root.get("$defs", {})
        self.problems: list[str] = []
        self.seen: set[tuple[str, str]] = set()

    def resolve(self, node: Schema, defs: Schema) -> Schema:
        while "$ref" in node:
            node = defs[str(node["$ref"]).rsplit("/", 1)[-1]]
        return node

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        if "$ref" in old and "$ref" in new:
            pair = (str(old["$ref"]), str(new["$ref"]))
            if pair in self.seen:
                return
            self.seen.add(pair)
        old = self.resolve(old, self.old_defs)
        new = self.resolve(new, self.new_defs)
        self.compare_keywords(old, new, path)
        self.compare_enum(old, new, path)
        self.compare_properties(old, new, path)
        if "items" in old or "items" in new:
            self.compare_child(old, new, "items", f"{path}[]")
        self.compare_additional(old, new, path)
        for key in ("anyOf", "oneOf"):
            if key in old or key in new:
                self.compare_union(old.get(key), new.get(key), path)

    def compare_keywords(self, old: Schema, new: Schema, path: str) -> None:
        ignored = _DOC_KEYS | _STRUCT_KEYS | {_ADDITIONAL}
        for key in sorted((set(old) | set(new)) - ignored):
            if old.get(key) != new.get(key):
                self.problems.append(
                    f"{path}: type changed ({key}: {old.get(key)!r} -> "
                    f"{new.get(key)!r})"
                )

    def compare_enum(self, old: Schema, new: Schema, path: str) -> None:
        if "enum" not in old:
            if "enum" in new:
                self.problems.append(f"{path}: type changed (now an enum)")
            return
        new_values = new.get("enum")
        if new_values is None:
            self.problems.append(f"{path}: type changed (no longer an enum)")
            return
        for value in old["enum"]:
            if value not in new_values:
                self.problems.append(f"{path}: enum value {value!r} removed")

    def compare_properties(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        for name, old_prop in old_props.items():
            if name not in new_props:
                self.problems.append(f"{path}.{name}: property removed")
            else:
                self.compare(old_prop, new_props[name], f"{path}.{name}")
        old_required = set(old.get("required", ()))
        for name in sorted(set(new.get("required", ())) - old_required):
            if name in old_props:
                self.problems.append(f"{path}.{name}: became required")
            else:
                self.problems.append(f"{path}.{name}: new required field")

    def compare_child(self, old: Schema, new: Schema, key: str, path: str) -> None:
        old_child, new_child = old.get(key), new.get(key)
        if isinstance(old_child, Mapping) and isinstance(new_child, Mapping):
            self.compare(old_child, new_child, path)
        elif old_child != new_child:
            self.problems.append(
                f"{path}: type changed ({key}: {old_child!r} -> {new_child!r})"
            )

    def compare_additional(self, old: Schema, new: Schema, path: str) -> None:
        if _ADDITIONAL in old or _ADDITIONAL in new:
            self.compare_child(old, new, _ADDITIONAL, f"{path}{{}}")

    def compare_union(self, old: Any, new: Any, path: str) -> None:
        if not isinstance(old, list) or not isinstance(new, list):
            self.problems.append(f"{path}: type changed (union added or removed)")
            return
        old_by_kind = {self.kind(branch, self.old_defs): branch for branch in old}
        new_by_kind = {self.kind(branch, self.new_defs): branch for branch in new}
        if set(old_by_kind) != set(new_by_kind):
            self.problems.append(
                f"{path}: type changed ({sorted(old_by_kind)} -> {sorted(new_by_kind)})"
            )
            return
        for kind, branch in old_by_kind.items():
            self.compare(branch, new_by_kind[kind], path)

    def kind(self, branch: Schema, defs: Schema) -> str:
        """What tells union branches apart: a model's title, else its JSON type."""
        resolved = self.resolve(branch, defs)
        if "properties" in resolved:
            return f"object:{resolved.get('title', '')}"
        if "const" in resolved:
            return f"const:{resolved['const']!r}"
        return str(resolved.get("type", "any"))


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What makes `new` not an additive extension of `old`; empty if compatible."""
    walker = _Walker(old, new)
    walker.compare(old, new, "$")
    return walker.problems


def event_json_schema(cls: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema snapshot of a model, as committed in `schemas/`."""
    return cls.model_json_schema(mode="serialization")
