"""Sync handlers in the runner's threads: a thread that overruns its TIMEOUT keeps no slot."""

from __future__ import annotations

import threading
import time
from typing import Any

from bullworker import BaseJob, JobRegistry, worker_job
from tests.helpers import bull_queue, wait_finished
from tests.integration.runner_support import make_app

threads = JobRegistry()
RELEASE = threading.Event()


@worker_job(registry=threads)
class HangJob(BaseJob[Any, None]):
    """Blocks its thread far past its TIMEOUT (until the test releases it)."""

    TIMEOUT = 0.3

    def handle(self, data: Any) -> None:
        RELEASE.wait(30)


@worker_job(registry=threads)
class QuickSyncJob(BaseJob[dict[str, int], int]):
    TIMEOUT = 2

    def handle(self, data: dict[str, int]) -> int:
        time.sleep(0.01)
        return data["n"]


async def test_overrun_sync_handlers_do_not_starve_later_jobs(prefix: str) -> None:
    # Concurrency 2: two hung handlers once held every thread, and the jobs after
    # them failed with JobTimeout without ever running.
    app = make_app(prefix, registry=threads, worker_concurrency=2)
    runner = app.create_runner()
    await runner.start()
    RELEASE.clear()
    try:
        hung = [await app.worker_service.queue_job(HangJob, {}) for _ in range(2)]
        async with bull_queue("default", prefix) as queue:
            for job_id in hung:
                job = await wait_finished(queue, job_id)
                assert (
                    job.failedReason == "JobTimeout: HangJob ran longer than its TIMEOUT of 0.3 s"
                )
            quick = await app.worker_service.queue_jobs(QuickSyncJob, [{"n": n} for n in range(4)])
            for n, job_id in enumerate(quick):
                job = await wait_finished(queue, job_id)
                assert (job.failedReason, job.returnvalue) == (None, n)
        assert runner.retired_pools >= 1
    finally:
        RELEASE.set()
        await runner.stop(grace=5)
        await app.stop()
