"""A runner puts back its schedules when they go missing from Redis, and only those."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from typing import Any

import pytest

from bullworker import BaseJob, JobRegistry, worker_job
from bullworker.core import keys
from bullworker.runtime.cron import CronService
from tests.faults.servers import free_port
from tests.helpers import bull_queue, eventually
from tests.integration.cron_support import config_for, schedulers

repair = JobRegistry()
SCHEDULER = keys.scheduler_id("NightlyRepair")


@worker_job(registry=repair)
class NightlyRepair(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-repair"
    CRON_SCHEDULE = "0 0 3 * * *"

    async def handle(self, data: dict[str, Any]) -> None:
        return None


async def test_a_removed_schedule_comes_back_and_a_changed_one_is_left(prefix: str) -> None:
    service = CronService(config_for(prefix), repair, ["cron-repair"], check_interval=0.2)
    await service.start()
    try:
        async with bull_queue("cron-repair", prefix) as queue:
            assert (await schedulers(queue))[SCHEDULER]["pattern"] == "0 0 3 * * *"
            # A Redis restored from an old backup, or an older runner's start, drops it.
            await queue.removeJobScheduler(SCHEDULER)

            async def back() -> bool:
                return SCHEDULER in await schedulers(queue)

            await eventually(back, timeout=5)
            found = await schedulers(queue)
            assert found[SCHEDULER]["pattern"] == "0 0 3 * * *"
            assert found[SCHEDULER]["tz"] == "UTC"
            # A newer version's runner changed it: not ours to revert between starts.
            await queue.upsertJobScheduler(
                SCHEDULER, {"pattern": "0 0 4 * * *", "tz": "UTC"}, "NightlyRepair", {}, {}
            )
            for _ in range(5):  # five checks
                await asyncio.sleep(0.2)
                assert (await schedulers(queue))[SCHEDULER]["pattern"] == "0 0 4 * * *"
    finally:
        await service.stop()


async def test_schedules_are_installed_once_redis_answers(prefix: str) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not on PATH")
    port = free_port()
    private = f"redis://127.0.0.1:{port}/0"
    config = config_for(prefix, redis_url=private, redis_timeout=0.5)

    async def installed() -> bool:
        async with bull_queue("cron-repair", prefix, private) as queue:
            try:
                return SCHEDULER in {s["key"] for s in await queue.getJobSchedulers()}
            except Exception:
                return False

    service = CronService(config, repair, ["cron-repair"], check_interval=0.3)
    await service.start()  # nothing listens yet: logged, retried later
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )
        try:
            await eventually(installed, timeout=10)
        finally:
            await service.stop()
            proc.terminate()
            proc.wait(10)
