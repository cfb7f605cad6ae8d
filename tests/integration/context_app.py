"""Jobs of the job-context tests (tests/integration/test_job_context.py), on their own registry."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, TypedDict

from bullworker import (
    BaseJob,
    JobContext,
    JobRegistry,
    Snooze,
    UnrecoverableError,
    current_job,
    worker_job,
)

reg = JobRegistry()
log = logging.getLogger("tests.context_app")

#: What the handlers saw, in order (cleared by the tests).
SEEN: list[dict[str, Any]] = []


def seen(job: JobContext, **extra: Any) -> None:
    SEEN.append(
        {
            "id": job.id,
            "queue": job.queue,
            "name": job.name,
            "attempt": job.attempt,
            "attempts": job.attempts,
            "last": job.is_last_attempt,
            "priority": job.priority,
            "delay": job.delay,
            "same": current_job() is job,
            "thread": threading.current_thread().name,
            **extra,
        }
    )


@worker_job(registry=reg)
class ReportJob(BaseJob[dict[str, int], str]):
    """Reports progress and log lines, then returns."""

    async def handle(self, data: dict[str, int], job: JobContext) -> str:
        seen(job)
        for step in range(1, data["steps"] + 1):
            await job.log(f"step {step} of {data['steps']}")
            await job.progress({"done": step, "of": data["steps"]})
        log.warning("reported %d steps", data["steps"])
        return "reported"


@worker_job(registry=reg)
class SyncReportJob(BaseJob[dict[str, int], str]):
    """The sync twins, from the handler's thread."""

    def handle(self, data: dict[str, int], job: JobContext) -> str:
        seen(job)
        job.log_sync("from a thread")
        job.progress_sync(100)
        return "synced"


@worker_job(registry=reg)
class OneParamJob(BaseJob[Any, str]):
    """A handler without the context still finds it with current_job()."""

    async def handle(self, data: Any) -> str:
        seen(current_job())
        return "one"


@worker_job(registry=reg)
class FlakyJob(BaseJob[Any, int]):
    """Fails until its last attempt."""

    async def handle(self, data: Any, job: JobContext) -> int:
        seen(job)
        if not job.is_last_attempt:
            raise RuntimeError(f"attempt {job.attempt} fails")
        return job.attempt


class StepIn(TypedDict):
    step: int


@worker_job(registry=reg)
class StepJob(BaseJob[StepIn, int]):
    """Saves its progress in its data and snoozes between steps."""

    async def handle(self, data: StepIn, job: JobContext) -> int:
        seen(job, step=data["step"])
        if data["step"] < 3:
            await job.update_data({"step": data["step"] + 1})
            raise Snooze(0.1)
        return data["step"]


@worker_job(registry=reg)
class GiveUpJob(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise UnrecoverableError("the card was declined")


def helper_that_fails(value: str) -> None:
    raise KeyError(value)


@worker_job(registry=reg)
class DeepFailJob(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        await asyncio.sleep(0)
        helper_that_fails("missing-key")
