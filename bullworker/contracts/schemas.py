"""Walking JSON Schemas: sub-schemas, local ``$ref`` resolution, the definitions a schema uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bullworker.core.errors import OpsError

#: Keywords whose value is one sub-schema, a list of them, or a map of them.
ONE = ("additionalProperties", "items", "not", "propertyNames", "contains", "if", "then", "else",
       "unevaluatedItems", "unevaluatedProperties", "additionalItems")  # fmt: skip
MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
MAP = ("properties", "patternProperties", "dependentSchemas")
#: Keywords that only describe (no effect on what validates).
ANNOTATIONS = frozenset(
    ("title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
     "$comment", "$schema", "$id", "$defs", "definitions", "discriminator")
)  # fmt: skip


def children(schema: Any, *, with_definitions: bool = False) -> Iterator[Any]:
    """The direct sub-schemas of ``schema`` (those of ``$defs`` too if ``with_definitions``)."""
    if not isinstance(schema, dict):
        return
    if with_definitions:
        yield from definitions(schema).values()
    for key in ONE:
        if key in schema and isinstance(schema[key], dict | bool):
            yield schema[key]
    for key in MANY:
        if isinstance(schema.get(key), list):
            yield from schema[key]
    for key in MAP:
        if isinstance(schema.get(key), dict):
            yield from schema[key].values()


def ref_name(ref: str) -> str:
    """``Item`` of ``#/$defs/Item`` (or ``#/definitions/Item``); OpsError for another $ref."""
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix) and "/" not in ref[len(prefix) :]:
            return ref[len(prefix) :].replace("~1", "/").replace("~0", "~")
    raise OpsError(f"$ref {ref!r} is not a local definition (#/$defs/<name>)")


def definitions(root: Any) -> dict[str, Any]:
    """The named definitions of a schema document (``$defs`` and ``definitions``)."""
    if not isinstance(root, dict):
        return {}
    found: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(root.get(key), dict):
            found.update(root[key])
    return found


def resolve(schema: Any, defs: dict[str, Any]) -> tuple[Any, str | None]:
    """``schema`` with its ``$ref`` chain followed, and the last definition's name (or None)."""
    name = None
    seen: set[str] = set()
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        name = ref_name(schema["$ref"])
        if name in seen or name not in defs:
            raise OpsError(f"$ref to #/$defs/{name}: no such definition, or a loop of $refs")
        seen.add(name)
        schema = defs[name]
    return schema, name


def used_definitions(schema: Any, defs: dict[str, Any]) -> list[str]:
    """The names of the definitions ``schema`` refers to, directly or not, in sorted order."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                name = ref_name(ref)
                if name not in found:
                    if name not in defs:
                        raise OpsError(f"$ref to #/$defs/{name}: no such definition")
                    found.add(name)
                    stack.append(defs[name])
            stack.extend(child for child in children(item) if child is not item)
    return sorted(found)


def without_definitions(schema: Any) -> Any:
    """``schema`` without its ``$defs``/``definitions`` (and ``$schema``)."""
    if not isinstance(schema, dict):
        return schema
    return {k: v for k, v in schema.items() if k not in ("$defs", "definitions", "$schema")}


def is_anything(schema: Any) -> bool:
    """True for ``true`` and for a schema of annotations only (both accept every value)."""
    return schema is True or (isinstance(schema, dict) and set(schema) <= ANNOTATIONS)


def inferred_type(schema: dict[str, Any]) -> str:
    """The JSON type a schema without ``type`` is about, from its keywords (``any`` if none)."""
    if any(k in schema for k in ("properties", "additionalProperties", "required")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "array"
    if any(k in schema for k in ("pattern", "format", "minLength", "maxLength")):
        return "string"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
        return "number"
    return "any"
