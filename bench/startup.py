"""Item 7: cold start of ``bullworker --help`` and ``import bullworker`` (wall time)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Plan, median, python


def _time(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited with {done.returncode}: {done.stderr.decode()[-300:]}")
    return elapsed


def run(plan: Plan, log: Any) -> dict[str, Any]:
    script = Path(python()).with_name("bullworker")
    commands = {
        "python -c pass": [python(), "-c", "pass"],
        "python -c 'import bullworker'": [python(), "-c", "import bullworker"],
        "bullworker --help": [str(script), "--help"],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    times: dict[str, list[float]] = {label: [] for label in commands}
    for argv in commands.values():
        _time(argv, env)  # warm the page cache and the bytecode caches first
    for _ in range(plan.cold_repeats):  # interleaved: they share the noise
        for label, argv in commands.items():
            times[label].append(_time(argv, env))
    result: dict[str, Any] = {"repeats": plan.cold_repeats}
    for label, values in times.items():
        result[label] = {
            "median_ms": round(median(values) * 1000, 1),
            "runs_ms": [round(v * 1000, 1) for v in values],
        }
        log(f"  {label:32} {result[label]['median_ms']:7.1f} ms")
    base = result["python -c pass"]["median_ms"]
    result["import_over_bare_python_ms"] = round(
        result["python -c 'import bullworker'"]["median_ms"] - base, 1
    )
    return result
