"""The jobs, dependencies and app of the runner tests (test_runner_*.py), registered once."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, TypedDict

from bullworker import App, BaseJob, JobRegistry, create_app, worker_job
from tests.helpers import app_config

reg = JobRegistry()


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str) -> str:
        self.sent.append((to, subject))
        return f"msg-{len(self.sent)}"


class EmailIn(TypedDict):
    to: str
    subject: str


class Seen:
    """Collects what handlers observed (one instance per app)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.release = threading.Event()


@worker_job(registry=reg)
class SendEmailJob(BaseJob[EmailIn, dict[str, str]]):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def handle(self, data: EmailIn) -> dict[str, str]:
        return {"id": await self.mailer.send(data["to"], data["subject"])}


@worker_job(registry=reg)
class SyncJob(BaseJob[dict[str, int], int]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def handle(self, data: dict[str, int]) -> int:
        self.seen.items.append((threading.current_thread().name, self))
        return data["n"] * 2


@worker_job(registry=reg)
class FailingJob(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise ValueError("boom")


@worker_job(registry=reg)
class SetResultJob(BaseJob[Any, Any]):
    async def handle(self, data: Any) -> Any:
        return {1, 2}


@worker_job(registry=reg)
class SlowJob(BaseJob[dict[str, float], str]):
    TIMEOUT = 0.3

    async def handle(self, data: dict[str, float]) -> str:
        await asyncio.sleep(data["sleep"])
        return "done"


@worker_job(registry=reg)
class WaitJob(BaseJob[Any, int]):
    """Runs until the test releases it, then counts its runs."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, data: Any) -> int:
        self.seen.items.append("run")
        while not self.seen.release.is_set():
            await asyncio.sleep(0.02)
        return len(self.seen.items)


@worker_job(registry=reg)
class OtherQueueJob(BaseJob[Any, str]):
    QUEUE_NAME = "other"

    async def handle(self, data: Any) -> str:
        return "other"


CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("CURRENT", default="unset")


@worker_job(registry=reg)
class ContextJob(BaseJob[dict[str, bool], str]):
    async def handle(self, data: dict[str, bool]) -> str:
        if data.get("fail"):
            raise KeyError("nope")
        return CURRENT.get()


def make_app(prefix: str, *, registry: JobRegistry = reg, **settings: Any) -> App:
    settings.setdefault("record_jobs", False)  # these tests inspect finished jobs in Redis
    config = app_config(bull_prefix=prefix, app_env="production", **settings)
    return create_app(
        config=config, enable_worker=True, providers=[Mailer, Seen], registry=registry
    )


@worker_job(registry=reg)
class CountJob(BaseJob[dict[str, int], int]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, data: dict[str, int]) -> int:
        self.seen.items.append(data["n"])
        await asyncio.sleep(0.001)
        return data["n"]
