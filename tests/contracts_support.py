"""TypeScript projects for the contract tests and the docs' ``ts`` blocks: the real tsc, strict.

A project is a temporary directory with a ``package.json`` (an ES module), a strict
``tsconfig.json`` and ``node_modules`` linked to tests/node's (bullmq, ajv, typescript and
@types/node, pinned by its lockfile). ``jobs.ts`` is what ``bullworker contracts export`` writes
for examples/contracts/tasks.py, committed in examples/contracts/generated.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
EXAMPLE = ROOT / "examples" / "contracts"
#: The example's committed export: jobs.ts, index.json and the schema files.
GENERATED = EXAMPLE / "generated"
COMPILER_OPTIONS = {
    "strict": True,
    "target": "es2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "skipLibCheck": True,
    "types": ["node"],
    "outDir": "dist",
}


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not on PATH: the TypeScript checks need Node.js 20+")
    return found


def tsc() -> Path:
    script = NODE_MODULES / "typescript" / "bin" / "tsc"
    if not script.is_file():
        pytest.fail(f"{script} is missing: run `npm ci --prefix tests/node`", pytrace=False)
    return script


def project(directory: Path, files: dict[str, str]) -> Path:
    """A TypeScript project in ``directory`` with ``files`` (name -> text); returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "package.json").write_text('{"type": "module", "private": true}\n')
    if not (directory / "node_modules").exists():
        (directory / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    config = {"compilerOptions": COMPILER_OPTIONS, "files": sorted(files)}
    (directory / "tsconfig.json").write_text(json.dumps(config, indent=2))
    return directory


def compile_ts(directory: Path, *, emit: bool = False) -> subprocess.CompletedProcess[str]:
    """``tsc -p directory`` (``--noEmit`` unless ``emit``): its exit status and output."""
    command = [node(), str(tsc()), "-p", str(directory), "--pretty", "false"]
    if not emit:
        command.append("--noEmit")
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def example_jobs_ts() -> str:
    """The example's committed jobs.ts."""
    return (GENERATED / "jobs.ts").read_text()


def check_ts_block(text: str, where: str, workdir: Path, directory: Path) -> None:
    """A docs ``ts`` block compiles (strict) beside ``contracts/jobs.ts``: the export of the
    page's ``tasks.py`` (a block ``# tasks.py``) if it has one, else the example's."""
    if (workdir / "tasks.py").is_file():
        from tests.helpers import bullworker_env

        exported = subprocess.run(
            [sys.executable, "-m", "bullworker", "contracts", "export", "--app", "tasks:app",
             "--out", str(directory / "contracts")],
            cwd=workdir, env=bullworker_env(APP_ENV="test", PYTHONPATH=str(ROOT)),
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert exported.returncode == 0, f"{where}: export failed:\n{exported.stderr}"
        jobs = (directory / "contracts" / "jobs.ts").read_text()
    else:
        jobs = example_jobs_ts()
    project(directory, {"contracts/jobs.ts": jobs, "block.ts": text})
    out = compile_ts(directory)
    assert out.returncode == 0, f"{where}: tsc failed:\n{out.stdout}{out.stderr}"
