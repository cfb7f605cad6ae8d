"""Writing a contract to a directory, and reading one (or other JSON Schemas) back.

``--format typescript`` writes ``jobs.ts``; ``--format jsonschema`` writes one schema file per
job's data and result (``<job>.data.schema.json``, ``<job>.result.schema.json``) and
``index.json``, which names them. Both hold the whole contract: `read_contract` reads a
directory's ``index.json``, else its ``jobs.ts`` (the ``contract`` constant at its end).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bullworker.contracts.model import Contract, JobContract, Schema, check_schema, dump_json
from bullworker.contracts.typescript import CONTRACT_PREFIX, render_typescript
from bullworker.core.errors import OpsError

#: The export formats and the file each writes first.
FORMATS = {"typescript": "jobs.ts", "jsonschema": "index.json"}
_SCHEMA_FILE = re.compile(r".+\.(data|result)\.schema\.json")


def write_export(contract: Contract, out: Path, fmt: str) -> list[Path]:
    """Write ``contract`` into the directory ``out`` (made if missing); the files written.

    The jsonschema format also deletes the schema files of jobs that are no longer there.
    """
    if fmt not in FORMATS:
        raise OpsError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    if out.exists() and not out.is_dir():
        raise OpsError(f"{out} is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "typescript":
        target = out / "jobs.ts"
        _write(target, render_typescript(contract))
        return [target]
    files = _schema_files(contract)
    written = []
    for job in contract.jobs.values():
        for which in ("data", "result"):
            target = out / files[(job.name, which)]
            _write(target, dump_json(getattr(job, which)))
            written.append(target)
    index = out / "index.json"
    _write(index, dump_json(contract.to_json(lambda job, which: files[(job.name, which)])))
    keep = {path.name for path in written}
    for old in sorted(out.iterdir()):
        if _SCHEMA_FILE.fullmatch(old.name) and old.name not in keep:
            old.unlink()
    return [index, *written]


def _write(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (an unchanged export touches nothing)."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _schema_files(contract: Contract) -> dict[tuple[str, str], str]:
    """A file name per job and schema: the job's name with unsafe characters replaced."""
    found: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for name in contract.jobs:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"
        stem, n = base, 1
        while stem.lower() in used:  # case-insensitive file systems
            n += 1
            stem = f"{base}-{n}"
        used.add(stem.lower())
        for which in ("data", "result"):
            found[(name, which)] = f"{stem}.{which}.schema.json"
    return found


def read_contract(path: Path) -> Contract:
    """The contract exported into ``path``: a directory (its ``index.json``, else its
    ``jobs.ts``), an ``index.json`` or a ``jobs.ts``. OpsError when it cannot be read."""
    if path.is_dir():
        for name in ("index.json", "jobs.ts"):
            if (path / name).is_file():
                return read_contract(path / name)
        raise OpsError(f"{path} holds no contract: neither index.json nor jobs.ts is there")
    text = _read(path)
    if path.suffix == ".ts":
        start = text.find(CONTRACT_PREFIX)
        if start < 0:
            raise OpsError(f"{path}: no `{CONTRACT_PREFIX.strip()}`: not a bullworker jobs.ts")
        body = text[start + len(CONTRACT_PREFIX) :].rstrip().removesuffix(";")
        return Contract.from_json(_parse(body, path), str(path))
    return Contract.from_json(_parse(text, path), str(path), _loader(path))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OpsError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OpsError(f"cannot read {path}: {exc}") from None


def _parse(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise OpsError(f"{path}: not JSON: {exc}") from None


def _loader(index: Path) -> Any:
    def load(name: str) -> Schema:
        target = index.parent / name
        return check_schema(_parse(_read(target), target), str(target))

    return load


@dataclass(frozen=True)
class SchemaSource:
    """What ``contracts import`` reads: jobs with their schemas, or one schema of types."""

    jobs: list[JobContract]
    #: A schema given alone (no job): its definitions, and itself named ``name``.
    types: Schema | None = None
    name: str = "Payload"


def read_schemas(path: Path, job: str | None = None) -> SchemaSource:
    """The JSON Schemas of ``path``: a contract or index (``jobs`` of ``{"data", "result"}``),
    a plain map of job name to ``{"data", "result", "queue"}``, or one schema (the data of
    ``job`` if given, else only types)."""
    text = _read(path)
    value = _parse(text, path)
    where = str(path)
    if isinstance(value, dict) and isinstance(value.get("jobs"), dict):
        return SchemaSource(list(Contract.from_json(value, where, _loader(path)).jobs.values()))
    if _is_job_map(value):
        wrapped = {"format": "bullworker-contract", "version": 1, "jobs": value}
        return SchemaSource(list(Contract.from_json(wrapped, where, _loader(path)).jobs.values()))
    schema = check_schema(value, where)
    if job is not None:
        return SchemaSource([JobContract(job, None, schema, True)])
    title = schema.get("title") if isinstance(schema, dict) else None
    return SchemaSource([], schema, title if isinstance(title, str) and title else path.stem)


def _is_job_map(value: Any) -> bool:
    """``{"Name": {"data": ..., "result": ...}}``: objects with only those keys and ``queue``."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(
            isinstance(entry, dict)
            and bool(entry)
            and set(entry) <= {"data", "result", "queue"}
            and not name.startswith("$")
            for name, entry in value.items()
        )
    )
