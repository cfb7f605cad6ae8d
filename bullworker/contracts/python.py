"""Typed Python from JSON Schemas (``contracts import``): TypedDicts and ``queue_<job>`` functions.

Objects become TypedDicts (a field not in ``required`` is ``NotRequired``, keys that are not
identifiers use the functional syntax), ``enum``/``const`` become ``Literal``, ``anyOf``/``oneOf``
and type lists unions, arrays ``list[...]`` (``tuple[...]`` for a closed ``prefixItems``), other
objects ``dict[str, ...]``; ``$ref`` names a definition's type. Each job gets
``queue_<job>(workers, data, **opts)``, typed ``data: <Job>Data`` and returning
``JobHandle[<Job>Result]``, and all of them ``queue_job(workers, "<Job>", data)`` (overloaded by
name), so mypy checks every payload a Python producer queues for a job it does not run itself.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from bullworker.contracts.files import SchemaSource
from bullworker.contracts.model import JobContract
from bullworker.contracts.schemas import (
    definitions,
    inferred_type,
    is_anything,
    ref_name,
    resolve,
    used_definitions,
)

_TYPING = ("Any", "Final", "Literal", "Never", "NotRequired", "TypeAlias", "TypedDict",
           "overload")  # fmt: skip
_RESERVED = {*_TYPING, "JobHandle", "WorkerService", "QUEUES", "queue_job", "annotations",
             "str", "int", "float", "bool", "list", "dict", "tuple", "None", "object", "type"}  # fmt: skip
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}


def pascal(name: str) -> str:
    """``send-email`` -> ``SendEmail``, ``resize_image`` -> ``ResizeImage``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    found = "".join(w[0].upper() + w[1:] for w in words) or "Type"
    return f"T{found}" if found[0].isdigit() else found


def snake(name: str) -> str:
    """``ResizeImage`` -> ``resize_image``, ``send-email`` -> ``send_email``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    found = "_".join(w for w in re.split(r"[^A-Za-z0-9]+", spaced) if w).lower() or "job"
    return f"job_{found}" if found[0].isdigit() else found


@dataclass
class _Document:
    """One schema document: its definitions, and the Python name given to each."""

    defs: dict[str, Any]
    names: dict[str, str] = field(default_factory=dict)


class _Generator:
    """Python type declarations, in the order they are needed, and the typing names they use."""

    def __init__(self) -> None:
        self.taken: set[str] = set(_RESERVED)
        self.blocks: list[str] = []
        self.typing: set[str] = set()
        #: A definition already generated from another document (same name, same schemas).
        self.shared: dict[str, str] = {}

    def name(self, wanted: str) -> str:
        base = pascal(wanted)
        if keyword.iskeyword(base):
            base += "_"
        found, n = base, 1
        while found in self.taken:
            n += 1
            found = f"{base}{n}"
        self.taken.add(found)
        return found

    def use(self, *names: str) -> None:
        self.typing.update(names)

    def declare(self, name: str, schema: Any, doc: _Document, hint: str) -> None:
        """``name`` for ``schema``: a TypedDict class, or an alias of its type."""
        if _is_object(schema):
            self.typeddict(name, schema, doc)
            return
        self.use("TypeAlias")
        expression = self.quoted(self.type_of(schema, doc, hint))
        self.blocks.append(f"{_comment(schema)}{name}: TypeAlias = {expression}\n")

    def quoted(self, expression: str) -> str:
        """``expression`` as a string if it names a generated type (which may come later)."""
        words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression))
        return repr(expression) if words - _RESERVED & self.taken else expression

    def definition(self, ref: str, doc: _Document) -> str:
        if ref in doc.names:
            return doc.names[ref]
        schema = doc.defs[ref]
        used = {n: doc.defs[n] for n in used_definitions(schema, doc.defs)}
        key = json.dumps([ref, schema, used], sort_keys=True)
        if key in self.shared:
            doc.names[ref] = self.shared[key]
            return doc.names[ref]
        name = doc.names[ref] = self.shared[key] = self.name(ref)
        self.declare(name, schema, doc, name)
        return name

    def type_of(self, schema: Any, doc: _Document, hint: str) -> str:
        if schema is False:
            self.use("Never")
            return "Never"
        if is_anything(schema) or not isinstance(schema, dict):
            self.use("Any")
            return "Any"
        if isinstance(schema.get("$ref"), str):
            resolve(schema, doc.defs)  # OpsError for a missing definition
            return self.definition(ref_name(schema["$ref"]), doc)
        if "const" in schema:
            return self.literal([schema["const"]])
        if isinstance(schema.get("enum"), list):
            return self.literal(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                members = schema[key]
                return self.union(
                    [self.type_of(m, doc, f"{hint}Option{i + 1}") for i, m in enumerate(members)]
                )
        if isinstance(schema.get("allOf"), list):
            return self.all_of(schema["allOf"], doc, hint)
        kind = schema.get("type") or inferred_type(schema)
        if isinstance(kind, list):
            return self.union([self.type_of({**schema, "type": k}, doc, hint) for k in kind])
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return self.array(schema, doc, hint)
        if kind == "object":
            if _is_object(schema):
                name = self.name(hint)
                self.typeddict(name, schema, doc)
                return name
            extra = schema.get("additionalProperties", True)
            return f"dict[str, {self.type_of(extra, doc, f'{hint}Value')}]"
        self.use("Any")
        return "Any"

    def literal(self, values: list[Any]) -> str:
        plain = [v for v in values if isinstance(v, str | int | bool) and not isinstance(v, float)]
        others = [v for v in values if v is not None and v not in plain]
        members = []
        if plain:
            self.use("Literal")
            members.append(f"Literal[{', '.join(_literal(v) for v in plain)}]")
        kinds = {"str" if isinstance(v, str) else type(v).__name__ for v in others}
        members += sorted(k if k in ("float", "bool", "int", "str") else "Any" for k in kinds)
        if None in values:
            members.append("None")
        if "Any" in members:
            self.use("Any")
        return self.union(members)

    def union(self, members: list[str]) -> str:
        unique = list(dict.fromkeys(members))
        if "Any" in unique:
            return "Any"
        if "None" in unique:  # None last: X | None
            unique = [m for m in unique if m != "None"] + ["None"]
        return " | ".join(unique) if unique else self.type_of(False, _Document({}), "")

    def array(self, schema: dict[str, Any], doc: _Document, hint: str) -> str:
        items = schema.get("items", True)
        prefix = schema.get("prefixItems")
        closed = items is False or schema.get("maxItems") == len(prefix or ())
        if (
            isinstance(prefix, list)
            and closed
            and schema.get("minItems", len(prefix)) == len(prefix)
        ):
            members = [self.type_of(s, doc, f"{hint}Item{i + 1}") for i, s in enumerate(prefix)]
            return f"tuple[{', '.join(members)}]" if members else "tuple[()]"
        if isinstance(prefix, list):
            members = [self.type_of(s, doc, f"{hint}Item") for s in prefix]
            if items is not False:
                members.append(self.type_of(items, doc, f"{hint}Item"))
            return f"list[{self.union(members)}]"
        return f"list[{self.type_of(items, doc, f'{hint}Item')}]"

    def all_of(self, members: list[Any], doc: _Document, hint: str) -> str:
        if len(members) == 1:
            return self.type_of(members[0], doc, hint)
        resolved = [resolve(member, doc.defs)[0] for member in members]
        if all(_is_object(m) for m in resolved):
            merged = {
                "type": "object",
                "properties": {k: v for m in resolved for k, v in m["properties"].items()},
                "required": [r for m in resolved for r in m.get("required", [])],
            }
            name = self.name(hint)
            self.typeddict(name, merged, doc)
            return name
        self.use("Any")
        return "Any"

    def typeddict(self, name: str, schema: dict[str, Any], doc: _Document) -> None:
        self.use("TypedDict")
        index = len(self.blocks)
        self.blocks.append("")  # its place: nested types come after it
        required = set(schema.get("required") or ())
        fields = []
        for key, sub in schema["properties"].items():
            typ = self.type_of(sub, doc, f"{name}{pascal(key)}")
            if key not in required:
                self.use("NotRequired")
                typ = f"NotRequired[{typ}]"
            fields.append((key, typ, sub))
        doc_line = _docstring(schema)
        if all(k.isidentifier() and not keyword.iskeyword(k) for k, _, _ in fields):
            body = "".join(f"{_comment(sub, '    ')}    {k}: {t}\n" for k, t, sub in fields)
            self.blocks[index] = f"class {name}(TypedDict):\n{doc_line}{body}"
        else:
            items = "".join(f"        {json.dumps(k)}: {self.quoted(t)},\n" for k, t, _ in fields)
            self.blocks[index] = f'{name} = TypedDict(\n    "{name}",\n    {{\n{items}    }},\n)\n'


def _is_object(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and isinstance(schema.get("properties"), dict)
        and bool(schema["properties"])
        and (schema.get("type") or "object") == "object"
        and not any(k in schema for k in ("anyOf", "oneOf", "allOf", "enum", "const", "$ref"))
    )


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _comment(schema: Any, indent: str = "") -> str:
    text = schema.get("description") if isinstance(schema, dict) else None
    if not isinstance(text, str) or not text.strip():
        return ""
    return "".join(f"{indent}#: {line}".rstrip() + "\n" for line in text.strip().splitlines())


def _docstring(schema: dict[str, Any]) -> str:
    text = schema.get("description")
    if not isinstance(text, str) or not text.strip():
        return ""
    clean = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = clean.splitlines()
    if len(lines) == 1:
        return f'    """{lines[0]}"""\n\n'
    return (
        '    """'
        + "\n".join(f"    {line}".rstrip() if i else line for i, line in enumerate(lines))
        + '\n    """\n\n'
    )


_HEADER = '''"""Job types generated by `bullworker contracts import` from {origin}: do not edit.

{what}
"""

from __future__ import annotations

'''
_JOBS = """Each job's data and result are TypedDicts; ``queue_<job>(workers, data)`` queues the job
with `WorkerService.queue_job_by_name`, its data type-checked by mypy."""
_TYPES = "Its types, as TypedDicts and type aliases."


def render_python(source: SchemaSource, origin: str) -> str:
    """The text of a Python module of the types (and queueing functions) of ``source``."""
    gen = _Generator()
    jobs = []
    for job in source.jobs:
        types = []
        for which in ("data", "result"):
            schema = getattr(job, which)
            name = gen.name(f"{job.name}{which.title()}")
            gen.declare(name, _root(schema), _Document(definitions(schema)), name)
            types.append(name)
        function = _unique(f"queue_{snake(job.name)}", gen.taken)
        jobs.append((job, types[0], types[1], function))
    if source.types is not None:
        doc = _Document(definitions(source.types))
        for ref in sorted(doc.defs):
            gen.definition(ref, doc)
        root = _root(source.types)
        if not is_anything(root):
            name = gen.name(source.name)
            gen.declare(name, root, doc, name)
    code = _functions(jobs, gen)
    imports = sorted(gen.typing, key=lambda n: (n[0].islower(), n))
    parts = [_HEADER.format(origin=origin, what=_JOBS if jobs else _TYPES)]
    if imports:
        parts.append(f"from typing import {', '.join(imports)}\n")
    if jobs:
        parts.append("\nfrom bullworker import JobHandle, WorkerService\n")
    parts += [f"\n\n{block}" for block in gen.blocks]
    parts.append(code)
    return "".join(parts)


def _root(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: v for k, v in schema.items() if k not in ("$defs", "definitions", "$schema")}
    return schema


def _unique(name: str, taken: set[str]) -> str:
    found, n = name, 1
    while found in taken:
        n += 1
        found = f"{name}_{n}"
    taken.add(found)
    return found


def _functions(jobs: list[tuple[JobContract, str, str, str]], gen: _Generator) -> str:
    """``QUEUES``, a ``queue_<job>`` per job and the overloaded ``queue_job``."""
    if not jobs:
        return ""
    gen.use("Any", "Final", "Literal")
    queues = {job.name: job.queue for job, *_ in jobs if job.queue is not None}
    lines = "".join(f"    {json.dumps(n)}: {json.dumps(q)},\n" for n, q in queues.items())
    parts = [
        "\n\n#: The queue of each job whose queue is known (the others go to BULL_QUEUE).\n"
        f"QUEUES: Final[dict[str, str]] = {{\n{lines}}}\n"
        if lines
        else "\n\nQUEUES: Final[dict[str, str]] = {}\n"
    ]
    for job, data, result, function in jobs:
        name = json.dumps(job.name)
        where = f" on the queue {json.dumps(job.queue)}" if job.queue else ""
        parts.append(
            f"\n\nasync def {function}(\n"
            f"    workers: WorkerService, data: {data}, **opts: Any\n"
            f") -> JobHandle[{result}]:\n"
            f'    """Queue the job {job.name}{where}; ``opts`` are BullMQ job options."""\n'
            f"    handle: JobHandle[{result}] = await workers.queue_job_by_name(\n"
            f"        {name}, data, queue=QUEUES.get({name}), force=True, **opts\n"
            f"    )\n"
            f"    return handle\n"
        )
    if len(jobs) > 1:
        gen.use("overload")
        for job, data, result, _ in jobs:
            parts.append(
                f"\n\n@overload\nasync def queue_job(\n"
                f"    workers: WorkerService, name: Literal[{json.dumps(job.name)}], data: {data},"
                f" **opts: Any\n) -> JobHandle[{result}]: ...\n"
            )
    job, data, result, _ = jobs[0]
    name, data, result = (
        ("str", "Any", "Any")
        if len(jobs) > 1
        else (f"Literal[{json.dumps(job.name)}]", data, result)
    )
    parts.append(
        "\n\nasync def queue_job(\n"
        f"    workers: WorkerService, name: {name}, data: {data}, **opts: Any\n"
        f") -> JobHandle[{result}]:\n"
        '    """Queue the job ``name`` (one of this module\'s) with ``data``, checked by name."""\n'
        "    return await workers.queue_job_by_name("
        "name, data, queue=QUEUES.get(name), force=True, **opts)\n"
    )
    return "".join(parts)
