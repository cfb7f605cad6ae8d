"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bullmq import Queue


@asynccontextmanager
async def bull_queue(name: str, prefix: str) -> AsyncIterator[Any]:
    """A raw bullmq Queue for inspecting what the runner did."""
    queue = Queue(name, {"prefix": prefix, "connection": {"socket_timeout": None}})
    try:
        yield queue
    finally:
        await queue.close()


async def wait_finished(queue: Any, job_id: str, timeout: float = 10.0) -> Any:
    """Poll until the job is completed or failed for good; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await queue.getJob(job_id)
        if job is not None and job.finishedOn:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    """Poll ``check`` until it is true, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")
