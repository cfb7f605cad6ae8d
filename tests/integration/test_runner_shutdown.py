"""Stopping a runner against real Redis: graceful, forced, and while jobs keep coming."""

from __future__ import annotations

import asyncio
import threading
import time

from bullworker import WorkerService
from tests.helpers import bull_queue, eventually, wait_finished
from tests.integration.runner_support import CountJob, Seen, WaitJob, make_app


async def test_graceful_shutdown_lets_running_jobs_finish(prefix: str) -> None:
    app = make_app(prefix)
    runner = app.create_runner()
    await runner.start()
    job_id = await app.worker_service.queue_job(WaitJob, {})
    seen = app.resolve(Seen)
    await eventually(lambda: seen.items == ["run"])
    threading.Timer(0.3, seen.release.set).start()
    started = time.monotonic()
    await runner.stop(grace=5)
    assert time.monotonic() - started < 3
    async with bull_queue("default", prefix) as queue:
        job = await queue.getJob(job_id)
        assert await job.getState() == "completed"
    await app.stop()


async def test_forced_shutdown_returns_the_job_through_the_stalled_path(prefix: str) -> None:
    settings = {"worker_lock_duration": 1000, "worker_stalled_interval": 500}
    first = make_app(prefix, **settings)
    runner = first.create_runner()
    await runner.start()
    job_id = await first.worker_service.queue_job(WaitJob, {})
    await eventually(lambda: first.resolve(Seen).items == ["run"])
    started = time.monotonic()
    await runner.stop(grace=0.2)  # the job never finishes by itself
    assert time.monotonic() - started < 2
    async with bull_queue("default", prefix) as queue:
        assert await queue.getJobState(job_id) == "active"
        second = make_app(prefix, **settings)
        second.resolve(Seen).release.set()
        rerun = second.create_runner()
        await rerun.start()
        try:
            job = await wait_finished(queue, job_id, timeout=10)
        finally:
            await rerun.stop(grace=1)
            await second.stop()
        assert await job.getState() == "completed"
        assert job.stalledCounter == 1
    await first.stop()


async def produce_until(stop: asyncio.Event, service: WorkerService) -> None:
    n = 0
    while not stop.is_set():
        await service.queue_job(CountJob, {"n": n})
        n += 1
        await asyncio.sleep(0.002 * (n % 3))


async def test_graceful_stop_finishes_every_job_it_took(prefix: str) -> None:
    # A stop while jobs keep coming catches fetches in flight. Each taken job
    # must run to completion now, not sit active until the stalled check.
    # Without the fix about 4 rounds in 10 left a job active.
    for round_ in range(12):
        round_prefix = f"{prefix}:r{round_}"
        app = make_app(round_prefix, worker_concurrency=4)
        runner = app.create_runner()
        await runner.start()
        stop = asyncio.Event()
        producer = asyncio.create_task(produce_until(stop, app.worker_service))
        await asyncio.sleep(0.05 + 0.01 * round_)
        await runner.stop(grace=5)
        stop.set()
        await producer
        async with bull_queue("default", round_prefix) as queue:
            active = await queue.getJobs(["active"])
            completed = await queue.getJobs(["completed"])
        ran = app.resolve(Seen).items
        await app.stop()
        assert active == [], f"round {round_}: {[j.id for j in active]} left active"
        assert sorted(ran) == sorted(j.data["n"] for j in completed), f"round {round_}"
