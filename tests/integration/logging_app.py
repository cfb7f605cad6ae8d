"""The app of the logging and completion tests; its config comes from the environment."""

from __future__ import annotations

import asyncio
import logging

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()
log = logging.getLogger("tests.logging_app")


@worker_job(registry=registry)
class LogAsync(BaseJob[dict[str, int], int]):
    """Logs from its async handler."""

    async def handle(self, data: dict[str, int]) -> int:
        log.info("async handler got %d", data["n"])
        return data["n"]


@worker_job(registry=registry)
class LogSync(BaseJob[dict[str, int], int]):
    """Logs from its sync handler, in a thread of the runner."""

    QUEUE_NAME = "other"

    def handle(self, data: dict[str, int]) -> int:
        log.info("sync handler got %d", data["n"])
        return data["n"]


@worker_job(registry=registry)
class Sleep(BaseJob[dict[str, float], None]):
    async def handle(self, data: dict[str, float]) -> None:
        log.info("sleeping %g s", data["seconds"])
        await asyncio.sleep(data["seconds"])


@worker_job(registry=registry)
class Fail(BaseJob[dict[str, int], None]):
    async def handle(self, data: dict[str, int]) -> None:
        raise RuntimeError("failing on purpose")


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
