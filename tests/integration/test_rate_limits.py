"""Rate limits and global concurrency hold on a runner, whoever set them, and it runs at them.

A limit set from Node (``setGlobalRateLimit``, ``setGlobalConcurrency``), a
class's ``RATE_LIMIT`` and a handler's ``RateLimited`` are all BullMQ's, in
the queue's keys: every worker of the queue shares them. The runner must
neither exceed them nor wait BullMQ's ``drainDelay`` (5 s) for them to pass.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bullworker import (
    BaseJob,
    JobDefinitionError,
    JobHook,
    JobRegistry,
    RateLimited,
    create_app,
    worker_job,
)
from bullworker.core.hooks import JobRun
from tests.helpers import app_config, bull_queue, eventually, wait_finished
from tests.integration.runner_support import make_app
from tests.integration.test_node_interop import QUEUE, NodeScripts

pytestmark = [pytest.mark.node, pytest.mark.timeout(40)]

limits = JobRegistry()
#: Jobs running now and the most that ran at once; the handlers' start times by job.
RUNNING = {"now": 0, "most": 0}
STARTS: dict[str, list[float]] = {}


async def _run(job_id: str, sleep: float) -> None:
    STARTS.setdefault(job_id, []).append(time.monotonic())
    RUNNING["now"] += 1
    RUNNING["most"] = max(RUNNING["most"], RUNNING["now"])
    try:
        await asyncio.sleep(sleep)
    finally:
        RUNNING["now"] -= 1


@worker_job(registry=limits)
class Tick(BaseJob[dict[str, Any], int]):
    QUEUE_NAME = QUEUE

    async def handle(self, data: dict[str, Any]) -> int:
        await _run(str(data["n"]), data.get("sleep", 0.0))
        return int(data["n"])


@worker_job(registry=limits)
class TooFast(BaseJob[dict[str, Any], str]):
    """Rate-limited by its API on its first run (a 429), done on the next."""

    QUEUE_NAME = QUEUE

    async def handle(self, data: dict[str, Any]) -> str:
        key = f"fast-{data['n']}"
        await _run(key, 0.0)
        if len(STARTS[key]) == 1:
            raise RateLimited(data["delay"])
        return "done"


class FailedHook(JobHook):
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def job_finished(self, run: JobRun, outcome: Any, *args: Any, **kwargs: Any) -> None:
        self.outcomes.append(outcome)


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNNING.update(now=0, most=0)
    STARTS.clear()


async def run_all(
    prefix: str, payloads: list[dict[str, Any]], **settings: Any
) -> tuple[float, list[Any]]:
    """Queue ``Tick`` jobs, run a runner until all completed; the wall time and the jobs."""
    app = make_app(prefix, registry=limits, bull_queue=QUEUE, **settings)
    ids = await app.worker_service.queue_jobs(Tick, payloads)
    runner = app.create_runner()
    started = time.monotonic()
    await runner.start()
    try:
        async with bull_queue(QUEUE, prefix) as queue:

            async def all_done() -> bool:
                return (await queue.getJobCounts("completed"))["completed"] == len(ids)

            await eventually(all_done, timeout=20)
            wall = time.monotonic() - started
            jobs = [await queue.getJob(job_id) for job_id in ids]
    finally:
        await runner.stop(grace=5)
        await app.stop()
    return wall, jobs


def window_counts(jobs: list[Any], window_ms: int) -> list[int]:
    """How many jobs start in each window of BullMQ's limiter, by their ``processedOn``.

    BullMQ counts in fixed windows: one opens at the first job after the last one
    closed and lasts ``window_ms``. (A sliding window can hold up to twice the
    limit: the end of one window and the start of the next.) ``processedOn`` is
    the worker's clock just before its call: 20 ms of slack.
    """
    counts: list[int] = []
    opened = None
    for start in sorted(int(job.processedOn) for job in jobs):
        if opened is None or start >= opened + window_ms - 20:
            opened = start
            counts.append(0)
        counts[-1] += 1
    return counts


async def test_a_node_global_rate_limit_holds_and_the_runner_runs_at_it(
    prefix: str, redis_url: str
) -> None:
    node = NodeScripts(prefix, redis_url)
    limit = await node.run("queue_limits.mjs", {"rateLimit": [10, 1000]})
    assert limit["rateLimit"] == {"max": 10, "duration": 1000}, limit
    wall, jobs = await run_all(prefix, [{"n": n} for n in range(40)], worker_concurrency=10)
    # Four windows of ten: the last ten start one second after the third ten, about 3 s
    # after the first (bullmq alone waited its 5 s drainDelay after every ten: ~15 s).
    assert 2.9 <= wall <= 6.0, wall
    starts = sorted(int(job.processedOn) for job in jobs)
    assert starts[-1] - starts[0] >= 2900, starts
    assert window_counts(jobs, 1000) == [10, 10, 10, 10], starts


async def test_a_node_global_concurrency_holds_without_waiting_for_the_marker(
    prefix: str, redis_url: str
) -> None:
    node = NodeScripts(prefix, redis_url)
    assert (await node.run("queue_limits.mjs", {"concurrency": 2}))["concurrency"] == 2
    wall, jobs = await run_all(
        prefix, [{"n": n, "sleep": 0.15} for n in range(12)], worker_concurrency=10
    )
    assert RUNNING["most"] == 2, RUNNING
    # Six rounds of 0.15 s; a slot freed must not wait for drainDelay (5 s).
    assert wall < 3.0, wall
    assert [job.returnvalue for job in jobs] == list(range(12))


async def test_a_class_rate_limit_is_the_queues_limiter(prefix: str) -> None:
    registry = JobRegistry()

    @worker_job(registry=registry)
    class Limited(BaseJob[dict[str, Any], int]):
        QUEUE_NAME = QUEUE
        RATE_LIMIT = (5, 0.5)

        async def handle(self, data: dict[str, Any]) -> int:
            await _run(str(data["n"]), 0.0)
            return int(data["n"])

    app = make_app(prefix, registry=registry, bull_queue=QUEUE)
    ids = await app.worker_service.queue_jobs(Limited, [{"n": n} for n in range(15)])
    runner = app.create_runner()
    started = time.monotonic()
    await runner.start()
    try:
        assert runner.workers[QUEUE].opts["limiter"] == {"max": 5, "duration": 500}
        async with bull_queue(QUEUE, prefix) as queue:

            async def all_done() -> bool:
                return (await queue.getJobCounts("completed"))["completed"] == 15

            await eventually(all_done, timeout=15)
            wall = time.monotonic() - started
            jobs = [await queue.getJob(job_id) for job_id in ids]
    finally:
        await runner.stop(grace=5)
        await app.stop()
    assert 0.9 <= wall < 3.0, wall  # three windows of 0.5 s
    assert window_counts(jobs, 500) == [5, 5, 5], sorted(int(j.processedOn) for j in jobs)


async def test_two_rate_limits_on_one_queue_stop_the_runner_at_start(prefix: str) -> None:
    registry = JobRegistry()
    for name, limit in (("Slow", (1, 1.0)), ("Fast", (100, 1.0))):

        async def handle(self: Any, data: Any) -> None:
            return None

        registry.register(type(name, (BaseJob,), {"RATE_LIMIT": limit, "handle": handle}))
    app = make_app(prefix, registry=registry)
    runner = app.create_runner()
    try:
        with pytest.raises(JobDefinitionError, match=r"Slow\.RATE_LIMIT is 1/1s and Fast"):
            await runner.start()
        assert not runner.running
    finally:
        await app.stop()
    # QUEUE_RATE_LIMITS decides the queue's limit instead.
    app = make_app(prefix, registry=registry, queue_rate_limits="default=3/2s")
    runner = app.create_runner()
    await runner.start()
    try:
        assert runner.workers["default"].opts["limiter"] == {"max": 3, "duration": 2000}
    finally:
        await runner.stop(grace=5)
        await app.stop()


async def test_rate_limited_puts_the_job_back_without_spending_an_attempt(prefix: str) -> None:
    hook = FailedHook()
    config = app_config(
        bull_prefix=prefix,
        bull_queue=QUEUE,
        app_env="production",
        record_jobs=False,
        worker_concurrency=3,
    )
    app = create_app(config=config, enable_worker=True, registry=limits, hooks=[hook])
    limited = await app.worker_service.queue_job(TooFast, {"n": 1, "delay": 2})
    runner = app.create_runner()
    failed: list[Any] = []
    await runner.start()
    runner.workers[QUEUE].on("failed", lambda job, err: failed.append((job.id, err)))
    try:
        async with bull_queue(QUEUE, prefix) as queue:
            await eventually(lambda: "fast-1" in STARTS, timeout=5)
            # Back to waiting, no attempt spent, while the queue is rate-limited; the
            # runner's idle fetches (woken by its marker) leave it there.
            await eventually(lambda: _state_is(queue, limited, "waiting"), timeout=1.5)
            job = await queue.getJob(limited)
            assert job.attemptsMade == 0
            assert await queue.getRateLimitTtl() > 0
            after = await app.worker_service.queue_job(Tick, {"n": 2})
            done = await _finished(queue, limited)
            other = await _finished(queue, after)
    finally:
        await runner.stop(grace=5)
        await app.stop()
    assert await _state(done) == "completed"
    assert (done.returnvalue, done.attemptsMade, done.failedReason) == ("done", 1, None)
    first, second = STARTS["fast-1"]
    assert second - first >= 1.95, STARTS
    # The runner took no job of the queue while it was rate-limited.
    assert STARTS["2"][0] - first >= 1.95, STARTS
    assert other.returnvalue == 2
    assert failed == []
    assert "failed" not in hook.outcomes and hook.outcomes.count("completed") == 2, hook.outcomes


async def _state_is(queue: Any, job_id: str, state: str) -> bool:
    return bool(await queue.getJobState(job_id) == state)


async def _state(job: Any) -> str:
    return str(await job.getState())


async def _finished(queue: Any, job_id: str) -> Any:
    return await wait_finished(queue, job_id, timeout=10)


async def test_a_rate_limited_runner_sleeps_without_polling_and_stops_at_once(prefix: str) -> None:
    registry = JobRegistry()

    @worker_job(registry=registry)
    class OnePerMinute(BaseJob[dict[str, Any], int]):
        RATE_LIMIT = (1, 60.0)

        async def handle(self, data: dict[str, Any]) -> int:
            await _run(str(data["n"]), 0.0)
            return int(data["n"])

    app = make_app(prefix, registry=registry)
    await app.worker_service.queue_jobs(OnePerMinute, [{"n": n} for n in range(3)])
    runner = app.create_runner()
    await runner.start()
    worker = runner.workers["default"]
    calls = {"active": 0}
    move_to_active = worker.backend.moveToActive

    async def counted(*args: Any) -> Any:
        calls["active"] += 1
        return await move_to_active(*args)

    worker.backend.moveToActive = counted
    try:
        await eventually(lambda: "0" in STARTS, timeout=5)
        await asyncio.sleep(1.5)
        assert list(STARTS) == ["0"]  # the others wait for the window
        assert calls["active"] <= 2, calls  # it sleeps: no call while rate-limited
        assert worker.rate_limited
        await asyncio.wait_for(worker.pause(), 1)  # a pause cuts the sleep short
        worker.resume()
        stopping = time.monotonic()
        await runner.stop(grace=5)
        assert time.monotonic() - stopping < 1.0  # and so does a graceful close
    finally:
        await runner.stop(grace=0)
        await app.stop()
