"""An app for the CLI tests; its config comes from the environment."""

from __future__ import annotations

import asyncio
import time
from typing import TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


class EmailIn(TypedDict):
    to: str
    subject: str


@worker_job(registry=registry)
class CliEmail(BaseJob[EmailIn, str]):
    async def handle(self, data: EmailIn) -> str:
        return f"sent to {data['to']}"


@worker_job(registry=registry)
class CliOther(BaseJob[dict[str, int], int]):
    QUEUE_NAME = "cli-other"

    async def handle(self, data: dict[str, int]) -> int:
        return data.get("n", 0)


@worker_job(registry=registry)
class CliStuckSync(BaseJob[dict[str, float], None]):
    """A sync handler that outlives any shutdown grace."""

    def handle(self, data: dict[str, float]) -> None:
        time.sleep(data.get("seconds", 60))


@worker_job(registry=registry)
class CliSlowAsync(BaseJob[dict[str, float], None]):
    async def handle(self, data: dict[str, float]) -> None:
        await asyncio.sleep(data.get("seconds", 60))


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
producer_only = create_app(config=AppConfig(), registry=registry)
not_an_app = 42


def make_app() -> object:
    return app
