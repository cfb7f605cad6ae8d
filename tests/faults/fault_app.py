"""The app of the fault scenarios, run in-process or by ``bullworker start``.

Config comes from the environment. Every run of a handler appends a line to
the file named by ``FAULT_EXEC_LOG`` (read at each run), so a scenario can
count executions across processes, including ones killed mid-job:
``start <n> <pid> <time>`` when a run begins, ``done <n> <pid> <time>`` when it ends.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


class FaultIn(TypedDict, total=False):
    n: int
    sleep: float  # seconds the first run takes
    rerun_sleep: float  # seconds a later run of the same n takes (default: sleep)
    pad: str


def exec_log(event: str, n: int) -> None:
    path = os.environ.get("FAULT_EXEC_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:  # one short write: atomic with O_APPEND
            log.write(f"{event} {n} {os.getpid()} {time.time():.3f}\n")


def started_before(n: int) -> bool:
    path = os.environ.get("FAULT_EXEC_LOG")
    if not path or not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as log:
        return any(line.split()[:2] == ["start", str(n)] for line in log)


def _seconds(data: FaultIn, n: int) -> float:
    first = float(data.get("sleep", 0.0))
    return float(data.get("rerun_sleep", first)) if started_before(n) else first


@worker_job(registry=registry)
class FaultJob(BaseJob[FaultIn, dict[str, int]]):
    """The workload: sleeps as asked (cancellable), returns its number."""

    async def handle(self, data: FaultIn) -> dict[str, int]:
        n = int(data.get("n", -1))
        seconds = _seconds(data, n)
        exec_log("start", n)
        await asyncio.sleep(seconds)
        exec_log("done", n)
        return {"n": n}


@worker_job(registry=registry)
class FaultSyncJob(BaseJob[FaultIn, dict[str, int]]):
    """A plain-def handler (runs in a thread, cannot be cancelled)."""

    def handle(self, data: FaultIn) -> dict[str, int]:
        n = int(data.get("n", -1))
        seconds = _seconds(data, n)
        exec_log("start", n)
        time.sleep(seconds)
        exec_log("done", n)
        return {"n": n}


class StrictIn(TypedDict):
    email: str
    count: int


@worker_job(registry=registry)
class StrictJob(BaseJob[StrictIn, int]):
    """A payload that must validate."""

    async def handle(self, data: StrictIn) -> int:
        return data["count"]


@worker_job(registry=registry)
class SetResultJob(BaseJob[FaultIn, Any]):
    """Returns something that is not JSON."""

    async def handle(self, data: FaultIn) -> Any:
        return {1, 2, 3}


@worker_job(registry=registry)
class LoopBlockerJob(BaseJob[FaultIn, int]):
    """An async handler that blocks the event loop (the bug the watchdog reports)."""

    async def handle(self, data: FaultIn) -> int:
        n = int(data.get("n", -1))
        seconds = _seconds(data, n)
        exec_log("start", n)
        time.sleep(seconds)  # the mistake: blocking in async code
        exec_log("done", n)
        return n


@worker_job(registry=registry)
class FailJob(BaseJob[FaultIn, None]):
    """Always raises (a retryable error)."""

    async def handle(self, data: FaultIn) -> None:
        raise RuntimeError(f"failing on purpose ({data.get('n')})")


@worker_job(registry=registry)
class NeverReturnsJob(BaseJob[FaultIn, None]):
    """Never finishes by itself; its TIMEOUT ends it."""

    TIMEOUT = 1.0

    async def handle(self, data: FaultIn) -> None:
        await asyncio.Event().wait()


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
