"""Job contracts shared with Node: export, check and import typed job schemas.

Pure transforms between job classes and files (docs/contracts.md):

- `build_contract` turns registered job classes into a `Contract`: each job's queue and the
  JSON Schemas of its data and result, as the wire carries them;
- `render_typescript` / `write_export` write it as ``jobs.ts`` (types, the ``Jobs`` map, a typed
  ``addJob``) or as JSON Schema files with an ``index.json``; `read_contract` reads either back;
- `compare` lists the changes between two contracts, breaking or compatible;
- `render_python` generates typed Python (TypedDicts and ``queue_<job>`` functions) from JSON
  Schemas that come from elsewhere, e.g. a Node service.
"""

from __future__ import annotations

from bullworker.contracts.build import build_contract
from bullworker.contracts.diff import Change, compare
from bullworker.contracts.files import FORMATS, read_contract, read_schemas, write_export
from bullworker.contracts.model import Contract, JobContract
from bullworker.contracts.python import render_python
from bullworker.contracts.typescript import render_typescript

__all__ = [
    "FORMATS",
    "Change",
    "Contract",
    "JobContract",
    "build_contract",
    "compare",
    "read_contract",
    "read_schemas",
    "render_python",
    "render_typescript",
    "write_export",
]
