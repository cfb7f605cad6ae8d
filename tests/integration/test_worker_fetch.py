"""Finishing a job takes the next one in the same call, as Node's worker does."""

from __future__ import annotations

from typing import Any

from bullworker import BaseJob, JobRegistry, worker_job
from tests.helpers import bull_queue, eventually
from tests.integration.runner_support import make_app

fetching = JobRegistry()


@worker_job(registry=fetching)
class Noop(BaseJob[dict[str, int], int]):
    async def handle(self, data: dict[str, int]) -> int:
        return data["n"]


@worker_job(registry=fetching)
class Boom(BaseJob[dict[str, int], None]):
    async def handle(self, data: dict[str, int]) -> None:
        raise RuntimeError(f"boom {data['n']}")


async def test_completing_a_job_fetches_the_next(prefix: str) -> None:
    app = make_app(prefix, registry=fetching, worker_concurrency=4)
    ids = await app.worker_service.queue_jobs(Noop, [{"n": n} for n in range(300)])
    failing = await app.worker_service.queue_jobs(Boom, [{"n": n} for n in range(20)])
    runner = app.create_runner()
    await runner.start()
    worker = runner.workers["default"]
    separate_fetches = 0
    move_to_active = worker.backend.moveToActive

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal separate_fetches
        separate_fetches += 1
        return await move_to_active(*args, **kwargs)

    worker.backend.moveToActive = counted
    try:
        async with bull_queue("default", prefix) as queue:

            async def all_done() -> bool:
                counts = await queue.getJobCounts("completed", "failed")
                return counts["completed"] == 300 and counts["failed"] == 20

            await eventually(all_done, timeout=30)
            jobs = {j.id: j for j in await queue.getJobs(["completed", "failed"])}
    finally:
        await runner.stop(grace=5)
        await app.stop()
    assert [jobs[i].returnvalue for i in ids] == list(range(300))
    assert {jobs[i].failedReason for i in failing} == {f"RuntimeError: boom {n}" for n in range(20)}
    # Each completion took the next job; only the first takes per slot and those
    # after a failure (its path does not fetch) needed a call of their own.
    assert separate_fetches <= 4 + 20 + 10, separate_fetches
