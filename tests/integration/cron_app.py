"""An app for the cron tests (tests/integration/test_cron_*.py); config from the environment.

``bullworker start|schedules --app tests.integration.cron_app:app`` subprocesses
use the test's ``BULL_PREFIX``; in-process tests build their own app on ``registry``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job
from bullworker.transport.connection import redis_client

registry = JobRegistry()


def runs_key(prefix: str) -> str:
    """Redis list to which every CronTick run appends ``{"pid", "at"}``."""
    return f"{prefix}:crontest:runs"


@worker_job(registry=registry)
class CronTick(BaseJob[dict[str, Any], int]):
    """Runs every second and leaves a trace of each run in Redis."""

    CRON_SCHEDULE = "* * * * * *"

    def __init__(self, config: AppConfig) -> None:
        self.config = config

    async def handle(self, data: dict[str, Any]) -> int:
        async with redis_client(self.config.redis_settings("bull")) as client:
            entry = json.dumps({"pid": os.getpid(), "at": time.time()})
            return await client.rpush(runs_key(self.config.bull_prefix), entry)  # type: ignore[no-any-return]


@worker_job(registry=registry)
class CronNightly(BaseJob[dict[str, Any], None]):
    """A daily schedule in a timezone of its own, on a queue of its own."""

    QUEUE_NAME = "cron-other"
    CRON_SCHEDULE = "0 30 9 * * *"
    CRON_TZ = "Europe/Stockholm"
    CRON_DATA = {"report": "daily"}  # noqa: RUF012
    JOB_OPTIONS = {"attempts": 2}  # noqa: RUF012

    async def handle(self, data: dict[str, Any]) -> None:
        return None


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
