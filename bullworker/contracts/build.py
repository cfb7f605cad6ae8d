"""The contract of registered job classes: pydantic's JSON Schemas, as the wire carries them.

A job's data schema is pydantic's ``validation`` schema of its ``In`` type (what the runner
accepts), its result schema the ``serialization`` schema of its ``Out`` type (what the runner
stores), both from the TypeAdapters that validate and dump them. Five adjustments make them say
exactly what the JSON holds and work with any validator (ajv, Python's jsonschema):

- a result's model and dataclass fields are all required: they are always dumped;
- date-time, date, time and uuid strings get a ``pattern`` (``format`` only annotates in
  draft 2020-12, and validators differ on it); the patterns check the calendar too;
- integers are bounded by ±(2^53 - 1): what Node reads back exactly, and what ``queue_job``
  accepts;
- sets are plain arrays (``uniqueItems`` dropped: Python accepts duplicates and drops them);
- ``discriminator`` (an OpenAPI keyword, refused by ajv's strict mode) and the titles pydantic
  makes up for fields are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from bullworker.contracts.model import DIALECT, SAFE_INTEGER, Contract, JobContract, Schema
from bullworker.contracts.schemas import MANY, ONE, used_definitions
from bullworker.core.errors import JobDefinitionError
from bullworker.core.jobs import JobDefinition

_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_LEAP_DAY = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29"
_DATE = f"(?!0000)(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_DAY})"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:[.,][0-9]{1,6})?)?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"
_HEX = "[0-9a-fA-F]"
#: The end of the string, in ECMA-262 and Python alike (Python's ``$`` also matches before a
#: final newline, which Python's date parser refuses).
_END = r"(?![\s\S])"
#: The ``pattern`` of each string ``format`` pydantic reads (ISO 8601 as pydantic parses it).
PATTERNS = {
    "date-time": f"^{_DATE}[Tt ]{_TIME}{_OFFSET}?{_END}",
    "date": f"^{_DATE}{_END}",
    "time": f"^{_TIME}{_OFFSET}?{_END}",
    "uuid": f"^(?:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|{_HEX}{{32}}){_END}",
}


#: The JSON Schema mode of a job's data (``in``: what is accepted) and result (``out``: dumped).
_MODES: tuple[tuple[str, Literal["validation", "serialization"]], ...] = (
    ("in", "validation"),
    ("out", "serialization"),
)


def build_contract(definitions: Iterable[JobDefinition], default_queue: str) -> Contract:
    """The contract of ``definitions`` (a `JobRegistry`); a class without ``QUEUE_NAME``
    runs on ``default_queue``. JobDefinitionError names a type that has no JSON Schema."""
    from pydantic import TypeAdapter
    from pydantic.errors import PydanticUserError

    jobs = sorted(definitions, key=lambda d: d.name)
    inputs: list[tuple[tuple[str, str], Literal["validation", "serialization"], Any]] = []
    for definition in jobs:
        for which, mode in _MODES:
            adapter = _adapter(definition, which)
            if adapter is not None:
                inputs.append(((definition.name, which), mode, adapter))
    try:
        keyed, top = TypeAdapter.json_schemas(
            inputs, ref_template="#/$defs/{model}", schema_generator=_generator()
        )
    except PydanticUserError as exc:
        for key, mode, adapter in inputs:  # say which job's type it is
            try:
                adapter.json_schema(mode=mode)
            except PydanticUserError:
                kind = "data" if key[1] == "in" else "result"
                raise JobDefinitionError(
                    f"{key[0]}: its {kind} type has no JSON Schema: {exc}"
                ) from exc
        raise JobDefinitionError(f"the job types have no JSON Schema: {exc}") from exc
    defs = {name: tidy(schema) for name, schema in top.get("$defs", {}).items()}
    found = []
    for definition in jobs:
        data, result = (
            _document(tidy(keyed.get(((definition.name, which), mode), {})), defs)
            for which, mode in _MODES
        )
        found.append(JobContract(definition.name, definition.queue(default_queue), data, result))
    return Contract.of(found)


def _adapter(definition: JobDefinition, which: str) -> Any:
    """The TypeAdapter that validates (``in``) or dumps (``out``) the job's JSON; None for Any."""
    from pydantic.errors import PydanticUserError

    try:
        return definition._adapter(which)  # the very adapter the runner uses
    except PydanticUserError as exc:
        kind = "data" if which == "in" else "result"
        raise JobDefinitionError(f"{definition.name}: its {kind} type is not JSON: {exc}") from exc


def _generator() -> Any:
    from pydantic.json_schema import GenerateJsonSchema

    class WireSchema(GenerateJsonSchema):
        """A model's or dataclass's fields are all in its dumped JSON: all are required there."""

        def field_is_required(self, field: Any, total: bool) -> bool:
            if self.mode == "serialization" and field["type"] != "typed-dict-field":
                return field.get("serialization_exclude_if") is None
            return bool(super().field_is_required(field, total))

    return WireSchema


def tidy(schema: Any) -> Any:
    """pydantic's schema with the adjustments of this module's docstring."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("discriminator", "uniqueItems"):
            continue
        if key in ("properties", "patternProperties", "dependentSchemas") and isinstance(
            value, dict
        ):
            out[key] = {name: _untitled(tidy(sub)) for name, sub in value.items()}
        elif key in ONE:
            out[key] = tidy(value)
        elif key in MANY and isinstance(value, list):
            out[key] = [tidy(sub) for sub in value]
        else:
            out[key] = value
    pattern = PATTERNS.get(out.get("format", ""))
    if pattern and out.get("type") == "string" and "pattern" not in out:
        out["pattern"] = pattern
    if out.get("type") == "integer" and not any(k in out for k in ("enum", "const")):
        if not any(k in out for k in ("minimum", "exclusiveMinimum")):
            out["minimum"] = -SAFE_INTEGER
        if not any(k in out for k in ("maximum", "exclusiveMaximum")):
            out["maximum"] = SAFE_INTEGER
    return out


def _untitled(schema: Any) -> Any:
    if isinstance(schema, dict) and "title" in schema:
        return {k: v for k, v in schema.items() if k != "title"}
    return schema


def _document(root: dict[str, Any], defs: dict[str, Any]) -> Schema:
    """One self-contained schema: the dialect, ``root`` and the definitions it uses."""
    used = used_definitions(root, defs)
    document: dict[str, Any] = {"$schema": DIALECT, **root}
    if used:
        document["$defs"] = {name: defs[name] for name in used}
    return document
