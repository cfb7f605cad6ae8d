"""BullWorker keeps BullMQ's Worker events, whichever path fetched a job.

Most jobs reach the worker through fetch-next (the reply of the script that
finished the job before); listeners must hear ``active`` for those as for the
ones the fetch loop takes, and the rest of Node's Worker contract besides.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bullworker.runtime.worker import BullWorker
from bullworker.transport.connection import bullmq_connection
from tests.helpers import app_config, bull_queue, eventually

N = 40


class Events:
    """Every event a worker emitted, in order, with its arguments."""

    NAMES = ("active", "completed", "failed", "progress", "drained", "closing", "closed", "error")

    def __init__(self, worker: BullWorker) -> None:
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        for name in self.NAMES:
            worker.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.log.append((name, args))

        return record

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.log if event == name]

    def last(self, name: str) -> int:
        return max((i for i, (event, _) in enumerate(self.log) if event == name), default=-1)


async def process(job: Any, token: str) -> Any:
    await asyncio.sleep(0.002)  # let the slots interleave
    if job.name == "fail":
        raise RuntimeError("boom")
    if job.name == "progress":
        await job.updateProgress(50)
    return job.data["n"]


def worker(prefix: str, redis_url: str, processor: Any, concurrency: int = 1) -> BullWorker:
    """A worker connected as a runner connects it (no socket timeout on blocking reads)."""
    connection = bullmq_connection(app_config(redis_url=redis_url).redis_settings("bull"))
    opts = {"connection": connection, "prefix": prefix, "autorun": False}
    return BullWorker("q", processor, {**opts, "concurrency": concurrency})


async def test_every_job_it_starts_emits_active_once_and_the_contract_holds(
    prefix: str, redis_url: str
) -> None:
    w = worker(prefix, redis_url, process, concurrency=3)
    events = Events(w)
    async with bull_queue("q", prefix, redis_url) as queue:
        plain = await queue.addBulk([{"name": "ok", "data": {"n": n}} for n in range(N)])
        failing = await queue.add("fail", {"n": -1})
        progress = await queue.add("progress", {"n": -2})
        ids = {j.id for j in plain} | {failing.id, progress.id}
        run = asyncio.create_task(w.run())
        try:
            await eventually(
                lambda: len(events.of("completed")) + len(events.of("failed")) == N + 2
            )
            active = events.of("active")
            assert len(active) == N + 2, len(active)
            assert {job.id for job, _ in active} == ids
            assert {prev for _, prev in active} == {"waiting"}
            # The queue is empty once every job was taken: a fetch then finds nothing.
            await eventually(lambda: events.last("drained") > events.last("active"))
        finally:
            await w.close()
            await run

    assert len(events.of("active")) == N + 2  # none after the last job either
    completed = events.of("completed")
    assert len(completed) == N + 1
    assert {job.id for job, _ in completed} == ids - {failing.id}
    [(failed_job, error)] = events.of("failed")
    assert failed_job.id == failing.id
    assert isinstance(error, RuntimeError)
    assert str(error) == "boom"
    [(progress_job, value)] = events.of("progress")
    assert (progress_job.id, value) == (progress.id, 50)
    assert events.of("closing") == [("closing queue",)]
    assert events.of("closed") == [()]
    assert events.last("closing") < events.last("closed")
    assert events.last("closed") == len(events.log) - 1
    assert events.of("error") == []


async def test_closing_and_closed_fire_once_when_a_forced_close_follows(
    prefix: str, redis_url: str
) -> None:
    # A runner's stop closes gracefully, then forces the close after its grace.
    started = asyncio.Event()

    async def slow(job: Any, token: str) -> None:
        started.set()
        await asyncio.sleep(30)

    w = worker(prefix, redis_url, slow)
    events = Events(w)
    async with bull_queue("q", prefix, redis_url) as queue:
        await queue.add("slow", {})
        run = asyncio.create_task(w.run())
        await asyncio.wait_for(started.wait(), 10)
        graceful = asyncio.create_task(w.close())
        await asyncio.sleep(0.2)
        await w.close(force=True)
        # As in a runner's stop: the forced close cancels the job, and the loop with it.
        await asyncio.gather(graceful, run, return_exceptions=True)
    assert events.of("closing") == [("closing queue",)]
    assert events.of("closed") == [()]
    assert len(events.of("active")) == 1
