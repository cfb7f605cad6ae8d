"""What changed between two contracts, and whether each change breaks the other side.

A job's data goes from producers (Node, Python, the CLI) to the runner, so the runner must still
accept every payload the old contract allowed: a removed field, a field made required, a new
required field or a narrower type breaks producers. Its result goes from the runner to readers,
so it must stay within what the old contract promised: a removed field, a field made optional or
a wider type (a new enum value, ``null``) breaks readers. Removing or renaming a job, or moving
it to another queue, breaks both. Everything else is compatible: a new optional field, a new
job, a wider data type, a narrower result type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bullworker.contracts.model import SAFE_INTEGER, Contract, JobContract, Schema
from bullworker.contracts.schemas import definitions, inferred_type, is_anything, resolve

_BOUNDS = {  # keyword -> (is a lower bound, is exclusive)
    "minimum": (True, False), "exclusiveMinimum": (True, True),
    "maximum": (False, False), "exclusiveMaximum": (False, True),
    "minLength": (True, False), "maxLength": (False, False),
    "minItems": (True, False), "maxItems": (False, False),
    "minProperties": (True, False), "maxProperties": (False, False),
}  # fmt: skip
_STRUCTURED = ("object", "array")


@dataclass(frozen=True)
class Change:
    """One difference: the job, where in it (``data.items[].sku``, ``queue``, or ``""`` for the
    job itself), what changed, and whether it breaks a producer or a reader."""

    job: str
    where: str
    message: str
    breaking: bool

    def __str__(self) -> str:
        return (
            f"{self.job} {self.where}: {self.message}"
            if self.where
            else f"{self.job}: {self.message}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "where": self.where, "change": self.message,
                "breaking": self.breaking}  # fmt: skip


def compare(old: Contract, new: Contract) -> list[Change]:
    """Every change from ``old`` (the committed contract) to ``new``, job by job."""
    changes: list[Change] = []
    added = [name for name in new.jobs if name not in old.jobs]
    for name in sorted({*old.jobs, *new.jobs}):
        if name not in new.jobs:
            twin = next((a for a in added if _same(old.jobs[name], new.jobs[a])), None)
            message = "job removed: producers that queue it break"
            if twin is not None:
                message = f"job renamed to {twin!r} (or removed): producers that queue it break"
            changes.append(Change(name, "", message, True))
        elif name not in old.jobs:
            changes.append(Change(name, "", "new job", False))
        else:
            before, after = old.jobs[name], new.jobs[name]
            if before.queue is not None and after.queue is not None and before.queue != after.queue:
                message = f"changed from {before.queue!r} to {after.queue!r}"
                changes.append(Change(name, "queue", message, True))
            changes += _Walk(name, before.data, after.data, producer=True).run("data")
            changes += _Walk(name, before.result, after.result, producer=False).run("result")
    return changes


def _same(a: JobContract, b: JobContract) -> bool:
    return (a.queue, a.data, a.result) == (b.queue, b.data, b.result)


@dataclass
class _Branch:
    """One alternative of a schema: a JSON type (or ``const``, ``any``) and its schema."""

    kind: str
    schema: dict[str, Any]
    ref: str | None = None
    value: Any = None


@dataclass
class _Walk:
    """Walks an old and a new schema side by side (``producer``: a data schema)."""

    job: str
    old: Schema
    new: Schema
    producer: bool
    changes: list[Change] = field(default_factory=list)
    seen: set[tuple[int, int]] = field(default_factory=set)

    def run(self, where: str) -> list[Change]:
        self.old_defs, self.new_defs = definitions(self.old), definitions(self.new)
        self.schema(self.old, self.new, where)
        return self.changes

    def add(self, where: str, message: str, breaking: bool) -> None:
        self.changes.append(Change(self.job, where, message, breaking))

    def narrowed(self, where: str, message: str) -> None:
        """The new schema refuses values the old one accepted: breaks producers."""
        self.add(where, message, self.producer)

    def widened(self, where: str, message: str) -> None:
        """The new schema accepts values the old one refused: breaks readers."""
        self.add(where, message, not self.producer)

    def schema(self, old: Any, new: Any, where: str) -> None:
        old, old_ref = resolve(old, self.old_defs)
        new, new_ref = resolve(new, self.new_defs)
        if old_ref or new_ref:  # a definition: once per pair (they may be recursive)
            if (id(old), id(new)) in self.seen:
                return
            self.seen.add((id(old), id(new)))
        before, after = branches(old, self.old_defs), branches(new, self.new_defs)
        pairs = [pair for kind in _STRUCTURED for pair in _pairs(kind, before, after)]
        paired = {id(branch) for pair in pairs for branch in pair}
        lost = [b for b in before if id(b) not in paired and not any(_covers(a, b) for a in after)]
        gained = [
            a for a in after if id(a) not in paired and not any(_covers(b, a) for b in before)
        ]
        was, now = describe(before), describe(after)
        if lost and gained:
            self.add(where, f"type changed from {was} to {now}", True)
        elif lost:
            values = [json.dumps(b.value) for b in lost if b.kind == "const"]
            if len(values) == len(lost):
                self.narrowed(where, f"no longer allows {', '.join(values)} (now {now})")
            else:
                self.narrowed(where, f"type narrowed from {was} to {now}")
        elif gained:
            values = [json.dumps(a.value) for a in gained if a.kind == "const"]
            if len(values) == len(gained):
                self.widened(where, f"now also allows {', '.join(values)} (was {was})")
            else:
                self.widened(where, f"type widened from {was} to {now}")
        for old_branch, new_branch in pairs:
            if old_branch.kind == "object":
                self.object(old_branch.schema, new_branch.schema, where)
            else:
                self.array(old_branch.schema, new_branch.schema, where)
            self.bounds(old_branch.schema, new_branch.schema, where)

    def object(self, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
        before, after = old.get("properties") or {}, new.get("properties") or {}
        was_required, now_required = set(old.get("required") or ()), set(new.get("required") or ())
        for name, schema in before.items():
            here = f"{where}.{name}"
            if name not in after:
                self.add(here, "field removed", True)
                continue
            if name in was_required and name not in now_required:
                self.widened(
                    here, "field made optional" + ("" if self.producer else ": results may lack it")
                )
            elif name not in was_required and name in now_required:
                self.narrowed(
                    here, "field made required" if self.producer else "field now always present"
                )
            self.schema(schema, after[name], here)
        for name in after:
            if name not in before:
                here = f"{where}.{name}"
                if name in now_required:
                    self.narrowed(here, "new required field" if self.producer else "new field")
                else:
                    self.add(here, "new optional field", False)
        extra_before = old.get("additionalProperties", True)
        extra_after = new.get("additionalProperties", True)
        if not before and not after:  # a dict: compare its values
            self.schema(extra_before, extra_after, f"{where}{{}}")
        elif extra_before is False and extra_after is not False:
            self.widened(where, "other fields now allowed")
        elif extra_before is not False and extra_after is False:
            self.narrowed(where, "other fields no longer allowed")

    def array(self, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
        before, after = old.get("prefixItems") or [], new.get("prefixItems") or []
        for i in range(max(len(before), len(after))):
            self.schema(
                before[i] if i < len(before) else old.get("items", True),
                after[i] if i < len(after) else new.get("items", True),
                f"{where}[{i}]",
            )
        if not before and not after:
            self.schema(old.get("items", True), new.get("items", True), f"{where}[]")

    def bounds(self, old: dict[str, Any], new: dict[str, Any], where: str) -> None:
        if not _within(new, old):
            self.narrowed(where, f"bounds narrowed from {_limits(old)} to {_limits(new)}")
        elif not _within(old, new):
            self.widened(where, f"bounds widened from {_limits(old)} to {_limits(new)}")


def _pairs(kind: str, before: list[_Branch], after: list[_Branch]) -> list[tuple[_Branch, _Branch]]:
    """The object (or array) alternatives of both sides that are one thing changed or not: the
    only one of each side, else those of the same definition name."""
    olds = [b for b in before if b.kind == kind]
    news = [a for a in after if a.kind == kind]
    if len(olds) == 1 and len(news) == 1:
        return [(olds[0], news[0])]
    named = {_base(a): a for a in news if _base(a)}
    return [(b, named[_base(b)]) for b in olds if _base(b) in named]


def branches(schema: Any, defs: dict[str, Any], ref: str | None = None) -> list[_Branch]:
    """The alternatives of ``schema``: one per ``anyOf``/``oneOf`` member, type, enum value."""
    schema, name = resolve(schema, defs)
    ref = name or ref
    if schema is False:
        return []
    if is_anything(schema) or not isinstance(schema, dict):
        return [_Branch("any", {}, ref)]
    if "const" in schema:
        return [_Branch("const", schema, ref, schema["const"])]
    if isinstance(schema.get("enum"), list):
        return [_Branch("const", schema, ref, value) for value in schema["enum"]]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return [b for sub in schema[key] for b in branches(sub, defs)]
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return branches(schema["allOf"][0], defs, ref)
    if "allOf" in schema:
        return [_Branch("allOf", schema, ref)]  # compared as a whole
    kind = schema.get("type")
    if isinstance(kind, list):
        return [_Branch(str(one), schema, ref) for one in kind]
    if kind is None:
        kind = inferred_type(schema)
    return [_Branch(str(kind), schema, ref)]


def _covers(wide: _Branch, narrow: _Branch) -> bool:
    """Whether ``wide`` accepts every value of ``narrow`` (object and array insides aside)."""
    if wide.kind == "any":
        return True
    if narrow.kind == "const":
        return _accepts(wide, narrow.value)
    if wide.kind == "allOf" or narrow.kind == "allOf":
        return wide.schema == narrow.schema
    if wide.kind != narrow.kind and not (wide.kind == "number" and narrow.kind == "integer"):
        return False
    if narrow.kind in _STRUCTURED:
        return False  # only the same alternative, paired and compared field by field
    for key in ("pattern", "format", "multipleOf"):
        if key in wide.schema and wide.schema[key] != narrow.schema.get(key):
            return False
    return _within(narrow.schema, wide.schema)


def _accepts(branch: _Branch, value: Any) -> bool:
    """Whether the (non-const) ``branch`` accepts the JSON ``value``."""
    if branch.kind == "const":
        return json.dumps(branch.value, sort_keys=True) == json.dumps(value, sort_keys=True)
    kind = _kind_of(value)
    if not (kind == branch.kind or (kind == "integer" and branch.kind == "number")):
        return False
    schema = branch.schema
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern is not None and re.search(pattern, value) is None:
            return False
        return _within({"minLength": len(value), "maxLength": len(value)}, schema)
    if kind in ("integer", "number"):
        return _within({"minimum": value, "maximum": value}, schema)
    return True


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "any")


def _bound(schema: dict[str, Any], lower: bool) -> tuple[float, bool]:
    """The lower (or upper) bound of ``schema`` and whether it is exclusive."""
    found = (float("-inf") if lower else float("inf"), False)
    for key, (is_lower, exclusive) in _BOUNDS.items():
        value = schema.get(key)
        if is_lower != lower or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        tighter = value > found[0] if lower else value < found[0]
        if tighter or (value == found[0] and exclusive):
            found = (value, exclusive)
    return found


def _within(narrow: dict[str, Any], wide: dict[str, Any]) -> bool:
    """Whether the bounds of ``narrow`` lie within those of ``wide``."""
    for lower in (True, False):
        (n, n_excl), (w, w_excl) = _bound(narrow, lower), _bound(wide, lower)
        inside = n > w if lower else n < w
        if not (inside or (n == w and (n_excl or not w_excl))):
            return False
    return True


def _limits(schema: dict[str, Any]) -> str:
    """``minimum 0, maxLength 3``: the bounds of ``schema`` (not those of every integer)."""
    safe = (("minimum", -SAFE_INTEGER), ("maximum", SAFE_INTEGER))
    found = [f"{k} {schema[k]}" for k in _BOUNDS if k in schema and (k, schema[k]) not in safe]
    return ", ".join(found) or "none"


def _base(branch: _Branch) -> str:
    name = branch.ref or str(branch.schema.get("title", ""))
    return name.removesuffix("-Input").removesuffix("-Output")


def describe(found: list[_Branch]) -> str:
    """A short text of a schema's alternatives: ``integer | null``, ``"a" | "b"``, ``Item``."""
    if not found:
        return "nothing"
    texts = []
    for b in found:
        if b.kind == "const":
            texts.append(json.dumps(b.value))
        elif b.kind == "object" and b.ref:
            texts.append(_base(b))
        elif b.kind == "string" and "format" in b.schema:
            texts.append(f"string ({b.schema['format']})")
        elif b.kind == "string" and "pattern" in b.schema:
            texts.append(f"string matching {b.schema['pattern']}")
        else:
            limits = _limits(b.schema)
            texts.append(b.kind if limits == "none" else f"{b.kind} ({limits})")
    return " | ".join(dict.fromkeys(texts))
