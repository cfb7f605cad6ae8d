"""A contract: every job's name, queue, and JSON Schemas of its data and result.

The same JSON shape is written by the exports (embedded in ``jobs.ts``; in ``index.json``, where
the schemas are file names) and read back by ``contracts check`` and ``contracts import``::

    {"format": "bullworker-contract", "version": 1,
     "jobs": {"<name>": {"queue": "<queue>", "data": <schema>, "result": <schema>}}}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bullworker.core.errors import OpsError

#: The ``format`` field of a contract, and the version of its shape.
FORMAT = "bullworker-contract"
VERSION = 1
#: The dialect of every exported schema.
DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: The integers JSON carries exactly between Python and Node (``Number.MAX_SAFE_INTEGER``).
SAFE_INTEGER = 2**53 - 1

#: A JSON Schema: an object, or ``true`` / ``false``.
Schema = dict[str, Any] | bool


@dataclass(frozen=True)
class JobContract:
    """One job: its queue (None when the schemas came without one) and its two schemas."""

    name: str
    queue: str | None
    data: Schema = True
    result: Schema = True


@dataclass(frozen=True)
class Contract:
    """The jobs of a service, by name (in name order)."""

    jobs: Mapping[str, JobContract] = field(default_factory=dict)

    @classmethod
    def of(cls, jobs: list[JobContract]) -> Contract:
        return cls({job.name: job for job in sorted(jobs, key=lambda job: job.name)})

    def to_json(self, schema: Callable[[JobContract, str], Any] | None = None) -> dict[str, Any]:
        """The contract as JSON; ``schema(job, "data" | "result")`` may replace each schema
        (``index.json`` holds file names)."""
        jobs = {}
        for name, job in self.jobs.items():
            entry: dict[str, Any] = {"queue": job.queue} if job.queue is not None else {}
            for which in ("data", "result"):
                entry[which] = schema(job, which) if schema else getattr(job, which)
            jobs[name] = entry
        return {"format": FORMAT, "version": VERSION, "jobs": jobs}

    @classmethod
    def from_json(
        cls, value: Any, where: str, load: Callable[[str], Schema] | None = None
    ) -> Contract:
        """Read :meth:`to_json`'s shape; a schema given as a string is ``load(string)``."""
        if not isinstance(value, dict) or not isinstance(value.get("jobs"), dict):
            raise OpsError(f"{where}: not a bullworker contract (no 'jobs' object)")
        version = value.get("version", VERSION)
        if value.get("format", FORMAT) != FORMAT or version != VERSION:
            raise OpsError(
                f"{where}: a contract of format {value.get('format')!r} version {version!r}; "
                f"this bullworker reads {FORMAT!r} version {VERSION}"
            )
        jobs = []
        for name, entry in value["jobs"].items():
            if not isinstance(entry, dict):
                raise OpsError(f"{where}: job {name!r} is not an object")
            queue = entry.get("queue")
            if queue is not None and not isinstance(queue, str):
                raise OpsError(f"{where}: job {name!r} has a queue that is not a string")
            schemas = {}
            for which in ("data", "result"):
                schema = entry.get(which, True)
                if isinstance(schema, str):
                    if load is None:
                        raise OpsError(f"{where}: job {name!r} names its {which} schema by file")
                    schema = load(schema)
                schemas[which] = check_schema(schema, f"{where}: {name} {which}")
            jobs.append(JobContract(name, queue, schemas["data"], schemas["result"]))
        return cls.of(jobs)


def check_schema(value: Any, where: str) -> Schema:
    """``value`` if it is a JSON Schema (an object or a boolean), else OpsError."""
    if isinstance(value, bool | dict):
        return value
    raise OpsError(f"{where}: a JSON Schema is an object or a boolean, not {type(value).__name__}")


def dump_json(value: Any) -> str:
    """The one way exports write JSON: indented, keys in their order, a final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
