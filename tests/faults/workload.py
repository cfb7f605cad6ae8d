"""Helpers of the fault scenarios: runner processes, execution counts, `_jobs` counts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bullworker import QueueUnavailable
from bullworker.history.backlog import recording_backlog
from bullworker.history.store import JobStore, open_store
from tests.faults.fault_app import FaultJob

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.faults.fault_app:app"


@dataclass(frozen=True)
class Run:
    event: str  # "start" or "done"
    n: int
    pid: int
    at: float  # time.time()


class ExecLog:
    """The executions that fault_app's handlers wrote to ``FAULT_EXEC_LOG``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def runs(self) -> list[Run]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                found.append(Run(parts[0], int(parts[1]), int(parts[2]), float(parts[3])))
        return found

    def started(self) -> Counter[int]:
        return Counter(r.n for r in self.runs() if r.event == "start")

    def done(self) -> set[int]:
        return {r.n for r in self.runs() if r.event == "done"}

    def done_at(self) -> dict[int, float]:
        """When each job number first finished a run (time.time())."""
        found: dict[int, float] = {}
        for run in self.runs():
            if run.event == "done":
                found.setdefault(run.n, run.at)
        return found

    def dup_executed(self) -> int:
        """Runs beyond the first one of each job number."""
        return sum(count - 1 for count in self.started().values())

    def first_done_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` (time.time()) to the first run that ended after it."""
        after = [r.at for r in self.runs() if r.event == "done" and r.at >= moment]
        return min(after) - moment if after else None


async def store_rows(store: JobStore, limit: int = 100_000) -> list[Any]:
    return list(await store.recent(limit=limit))


def dup_rows(rows: list[Any]) -> int:
    """Rows beyond one per job: per workload number ``n`` when the payload has one.

    Not per ``<queue>:<jobId>``: BullMQ ids come from a counter in Redis that can
    go back (a flush, a failover to a replica that had not seen the last INCR).
    """
    return len(rows) - len({_job_key(r) for r in rows})


def _job_key(row: Any) -> object:
    data = row.data
    return ("n", data["n"]) if isinstance(data, dict) and "n" in data else ("id", row.id)


async def with_store(url: str | None, *, sqlite_path: str = "", schema: str | None = None) -> Any:
    store = open_store(url, sqlite_path=sqlite_path, pg_schema=schema)
    await store.open()
    return store


async def finished_in_redis(url: str, prefix: str, queue: str = "default") -> int:
    """Finished jobs in Redis not recorded yet (recorded ones stay there for the keep window)."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return (await recording_backlog(client, prefix, queue)).total
    finally:
        await client.aclose()


def base_env(prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a ``bullworker`` process of the fault app."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BULL", "DATABASE_"))}
    env.update({"BULL_PREFIX": prefix, "APP_ENV": "production", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


class Proc:
    """A ``python -m bullworker ...`` process whose output goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bullworker", *args],
            cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    @classmethod
    def runner(cls, env: dict[str, str], log: Path, *args: str) -> Proc:
        return cls(["start", "--app", APP, *args], env, log)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        return await asyncio.to_thread(self.popen.wait, timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)
        self._out.close()


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


async def until(check: Any, timeout: float, what: str = "condition") -> float:
    """Poll ``check`` (sync or async) until true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s")


@dataclass
class Producer:
    """Queues a FaultJob every ``every`` seconds until stopped; keeps what happened."""

    app: Any
    every: float = 0.05
    sent: list[int] = field(default_factory=list)
    sent_at: dict[int, float] = field(default_factory=dict)  # n -> time.time() of the add
    refused: list[tuple[float, float, str]] = field(default_factory=list)  # (at, took, message)
    resumed_at: float | None = None  # first success after a refusal (time.time())
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self.app.worker_service.queue_job(FaultJob, {"n": n, "sleep": 0.2})
                self.sent.append(n)
                self.sent_at[n] = time.time()
                if self.refused and self.resumed_at is None:
                    self.resumed_at = time.time()
            except QueueUnavailable as exc:
                self.refused.append((time.time(), time.monotonic() - started, str(exc)))
            n += 1
            await asyncio.sleep(self.every)

    def stop(self) -> None:
        self._stop.set()
