"""BullWorker at its edges: locks during a graceful close, fetch-next with shared tokens."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullworker.runtime.worker import BullWorker
from tests.helpers import REDIS_URL, bull_queue, eventually


def worker(prefix: str, processor: Any, **opts: Any) -> BullWorker:
    return BullWorker(
        "q", processor, {"connection": REDIS_URL, "prefix": prefix, "autorun": False, **opts}
    )


async def test_locks_are_renewed_while_a_graceful_close_waits(prefix: str) -> None:
    # bullmq's run loop closes the lock manager as it ends, and a close ends it at
    # once when a slot is idle: a job running longer than its lock then lost it,
    # could run again elsewhere, and its completion failed ("Missing lock").
    started = asyncio.Event()

    async def slow(job: Any, token: str) -> str:
        started.set()
        await asyncio.sleep(2.5)
        return "done"

    w = worker(prefix, slow, concurrency=2, lockDuration=1000, stalledInterval=500)
    errors: list[str] = []
    w.on("error", lambda err, *_: errors.append(f"{type(err).__name__}: {err}"))
    run = asyncio.create_task(w.run())
    async with bull_queue("q", prefix) as queue:
        job = await queue.add("slow", {})
        await started.wait()
        began = time.monotonic()
        await w.close()
        await run
        assert time.monotonic() - began > 2  # it waited for the job
        assert await queue.getJobState(job.id) == "completed"
        assert (await queue.getJob(job.id)).returnvalue == "done"
    assert errors == []


async def test_fetched_jobs_are_not_lost_when_running_jobs_share_a_token(prefix: str) -> None:
    # bullmq's run loop can hand one token to several fetches; the job a finishing
    # run fetched was kept by token, so a second finish with the same token (here
    # slowed by a raising `completed` listener) overwrote it and it never ran.
    ran: list[str] = []

    async def quick(job: Any, token: str) -> str:
        ran.append(job.id)
        await asyncio.sleep(0.01)
        return "ok"

    def bad_listener(*_: Any) -> None:
        raise RuntimeError("listener bug")

    w = worker(prefix, quick, concurrency=3)
    w.on("completed", bad_listener)
    w.on("error", lambda *_: None)
    async with bull_queue("q", prefix) as queue:
        await queue.addBulk([{"name": "j", "data": {"n": n}} for n in range(20)])
        run = asyncio.create_task(w.run())
        try:

            async def every_job_ran() -> bool:
                return len(set(ran)) == 20

            await eventually(every_job_ran, timeout=10)
        finally:
            await w.close()
            await run
        assert (await queue.getJobCounts("active"))["active"] == 0
    assert sorted(ran, key=int) == [str(n) for n in range(1, 21)]
