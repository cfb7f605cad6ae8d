"""Where a worker's CPU goes: py-spy samples of a worker process under load.

py-spy (``pip install -e '.[bench]'``) samples the worker process from outside
at 200 Hz (pausing it for each sample: without that the shares swing from run
to run); threads that wait (``epoll_wait``, a lock) are not counted.
Each sample is put in one bucket: bullworker's recorder or dispatch when one
of their frames is on the stack, otherwise by the innermost frame's module.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    DATABASE_URL,
    Plan,
    children,
    fill,
    own_prefix,
    own_schema,
    python,
    python_env,
    watch_drain,
)

QUEUE = "bench"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*):(?P<line>\d+)\)$")
_IDLE = re.compile(r"^(Condition|Event)\.wait \(.*/threading\.py:\d+\)$")

#: (bucket, test on the whole stack) in order; the first match wins.
STACK_BUCKETS = (
    ("bullworker: recorder", ("/bullworker/history/recorder.py", "/bullworker/history/recording.py",
                              "/bullworker/history/store/", "/bullworker/transport/leader.py")),
    ("bullworker: dispatch, validation, DI, hooks", ("/bullworker/runtime/runner.py",
                                                     "/bullworker/runtime/dispatch.py",
                                                     "/bullworker/core/jobs.py",
                                                     "/bullworker/core/hooks.py",
                                                     "/bullworker/observe/tracing.py",
                                                     "/bullworker/app.py")),
    ("start-up (imports)", ("<frozen importlib._bootstrap>",)),
)  # fmt: skip
#: (bucket, substring of the innermost frame) for everything else.
LEAF_BUCKETS = (
    ("socket syscalls (send/recv in asyncio's transport)", "asyncio/selector_events.py"),
    ("redis-py: packing commands, parsing replies", "/redis/"),
    ("bullmq: worker loop, script arguments, Job objects", "/bullmq/"),
    ("event loop: epoll, tasks, callbacks (asyncio)", "/asyncio/"),
    ("event loop: epoll, tasks, callbacks (asyncio)", "/selectors.py"),
    ("msgpack / json", "msgpack"),
    ("msgpack / json", "/json/"),
)


def bucket(frames: list[str]) -> str:
    for name, needles in STACK_BUCKETS:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    leaf = frames[-1] if frames else ""
    for name, needle in LEAF_BUCKETS:
        if needle in leaf:
            return name
    return "other"


def summarize(raw: str) -> dict[str, Any]:
    """Bucket shares and the hottest innermost functions of py-spy's raw output."""
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack.strip() or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        if _IDLE.search(frames[-1]):
            continue  # a thread waiting on a lock (the loop watchdog), not work
        total += n
        buckets[bucket(frames)] += n
        match = _FRAME.match(frames[-1])
        if match:
            where = "/".join(match["path"].rsplit("/", 2)[-2:])
            leaves[f"{match['func']} ({where})"] += n
    share = {k: round(v / total, 4) for k, v in buckets.most_common()} if total else {}
    top = [(k, round(v / total, 4)) for k, v in leaves.most_common(12)] if total else []
    return {"samples": total, "buckets": share, "top_functions": top}


def py_spy() -> str | None:
    found = Path(python()).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


async def profile_worker(kind: str, record: bool, jobs: int, concurrency: int) -> dict[str, Any]:
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    async with own_schema("prof") as schema, own_prefix("prof") as prefix:
        await fill(QUEUE, prefix, jobs, "NoopJob")
        extra = {"BULL_QUEUE": QUEUE, "RECORD_JOBS": "true" if record else "false"}
        if record:
            extra.update(DATABASE_URL=DATABASE_URL, DATABASE_SCHEMA=schema)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            argv = [
                spy, "record", "--rate", "200", "--format", "raw",
                "--full-filenames", "--output", str(out), "--",
                python(), "-m", "bench.worker_proc", kind, "noop", QUEUE, str(concurrency),
            ]  # fmt: skip
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=python_env(prefix, **extra),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                drain = await watch_drain(
                    QUEUE, prefix, jobs, limit=60 + jobs / 30, alive=lambda: proc.returncode is None
                )
            finally:
                for child in children(proc.pid):  # the worker; py-spy stops when it exits
                    os.kill(child, signal.SIGTERM)
                try:
                    _, err = await asyncio.wait_for(proc.communicate(), 30)
                except TimeoutError:
                    proc.kill()
                    _, err = await proc.communicate()
            if not out.exists():
                return {"skipped": f"py-spy wrote nothing: {err.decode(errors='replace')[-300:]}"}
            summary = summarize(out.read_text())
    summary["jobs_per_s_under_profiler"] = round(drain.rate, 1)
    return summary


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    jobs = max(plan.jobs // 2, 200)
    result: dict[str, Any] = {"jobs": jobs}
    for label, kind, record in (
        ("raw", "raw", False),
        ("bullworker", "bullworker", False),
        ("bullworker+rec", "bullworker", True),
    ):
        summary = await profile_worker(kind, record, jobs, plan.concurrency)
        result[label] = summary
        if "skipped" in summary:
            log(f"  {label}: skipped ({summary['skipped']})")
            return result
        shares = "; ".join(f"{k} {v:.0%}" for k, v in summary["buckets"].items())
        log(f"  {label}: {summary['samples']} samples: {shares}")
    return result
