"""The machine and the versions a run measured, and the targets it is judged by."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import DATABASE_URL, ROOT, redis_client


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


async def describe() -> dict[str, Any]:
    client = redis_client()
    try:
        redis_version = (await client.info("server")).get("redis_version", "?")
    finally:
        await client.aclose()
    try:
        import psycopg

        async with await psycopg.AsyncConnection.connect(DATABASE_URL) as conn:
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
            pg_version = str(row[0]) if row else "?"
    except Exception as exc:  # reported, not fatal: only the recorder sections need it
        pg_version = f"unreachable ({type(exc).__name__})"
    node_bullmq = ROOT / "tests" / "node" / "node_modules" / "bullmq" / "package.json"
    try:
        node_bullmq_version = json.loads(node_bullmq.read_text())["version"]
    except (OSError, ValueError, KeyError):
        node_bullmq_version = "not installed"
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"]))
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "bullworker": _version("bullworker"),
        "bullworker_commit": f"{commit}{' (uncommitted changes)' if dirty else ''}",
        "bullmq": _version("bullmq"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "psycopg": _version("psycopg"),
        "opentelemetry_api": _version("opentelemetry-api"),
        "redis_server": redis_version,
        "postgresql_server": pg_version,
        "node": _run(["node", "--version"]) or "not installed",
        "node_bullmq": node_bullmq_version,
    }


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


#: (item, what, path to the figure, comparison, threshold)
TARGETS = (
    ("1", "bullworker / raw bullmq, no-op jobs (recording off)",
     ("throughput", "workloads", "noop", "ratios", "bullworker/raw", "ratio"), ">=", 0.9),
    ("1", "bullworker / raw bullmq, 1 ms I/O jobs (recording off)",
     ("throughput", "workloads", "sleep", "ratios", "bullworker/raw", "ratio"), ">=", 0.9),
    ("3", "--processes 2 / --processes 1, no-op jobs",
     ("scaling", "workloads", "noop", "speedup"), ">=", 1.7),
    ("3", "--processes 2 / --processes 1, 1 ms I/O jobs",
     ("scaling", "workloads", "sleep", "speedup"), ">=", 1.7),
    ("4", "recording lag p99 (s), 2 processes flat out",
     ("recorder", "end_to_end", "lag_p99_s"), "<", 2.0),
    ("4", "recorder alone, rows/s",
     ("recorder", "recorder_alone", "rows_per_s"), ">=", 5000),
    ("5", "queue_job / Queue.add",
     ("enqueue", "queue_job/Queue.add", "ratio"), ">=", 0.9),
    ("5", "queue_jobs / addBulk",
     ("enqueue", "queue_jobs/addBulk", "ratio"), ">=", 0.9),
    ("6", "RSS growth from 10k to 100k jobs (MB)",
     ("memory", "growth_first_to_last_mb"), "<", 10.0),
    ("15", "dashboard job list at 1M rows, p95 of the unfiltered pages (ms)",
     ("dashboard", "worst_p95_unfiltered_ms"), "<", 100),
    ("15", "dashboard job list at 1M rows, p95 of the filtered pages (ms)",
     ("dashboard", "worst_p95_filtered_ms"), "<", 100),
)  # fmt: skip


def judge(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met (None: not measured)."""
    verdicts = []
    for item, what, path, op, threshold in TARGETS:
        value = _get(sections, *path)
        met = None
        if isinstance(value, int | float):
            met = value >= threshold if op == ">=" else value < threshold
        verdicts.append(
            {
                "item": item,
                "what": what,
                "value": value,
                "target": f"{op} {threshold:g}",
                "met": met,
            }
        )
    return verdicts
