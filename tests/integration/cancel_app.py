"""An app for the cancel tests (test_ops_cancel.py), run by ``bullworker start`` in another
process; its config comes from the environment.

The handlers leave marks in files named by their data, so a test in another process sees
how far they got.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar, TypedDict

from bullworker import AppConfig, BaseJob, JobContext, JobRegistry, create_app, worker_job

registry = JobRegistry()


class Marks(TypedDict):
    #: A file the handler writes lines to: ``started``, then how it ended.
    marks: str
    #: Seconds the handler runs if nobody cancels it.
    seconds: float


def mark(data: Marks, line: str) -> None:
    with Path(data["marks"]).open("a") as out:
        out.write(line + "\n")


@worker_job(registry=registry)
class CancelSlow(BaseJob[Marks, str]):
    """An async handler: it awaits often, so a cancel stops it at once."""

    QUEUE_NAME = "cancels"
    JOB_OPTIONS: ClassVar[dict[str, Any]] = {"attempts": 3}

    async def handle(self, data: Marks, job: JobContext) -> str:
        mark(data, f"started attempt {job.attempt}")
        try:
            deadline = time.monotonic() + data["seconds"]
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            mark(data, f"interrupted: {job.cancel_reason}")
            raise
        mark(data, "finished")
        return "done"


@worker_job(registry=registry)
class CancelSync(BaseJob[Marks, str]):
    """A sync handler: its thread cannot be interrupted, so it checks ``job.cancelled``."""

    QUEUE_NAME = "cancels"
    JOB_OPTIONS: ClassVar[dict[str, Any]] = {"attempts": 3}

    def handle(self, data: Marks, job: JobContext) -> str:
        mark(data, f"started attempt {job.attempt}")
        deadline = time.monotonic() + data["seconds"]
        while time.monotonic() < deadline:
            if job.cancelled:
                mark(data, f"saw cancelled: {job.cancel_reason}")
                job.raise_if_cancelled()
            time.sleep(0.02)
        mark(data, "finished")
        return "done"


@worker_job(registry=registry)
class CancelQuick(BaseJob[dict[str, Any], str]):
    QUEUE_NAME = "cancels"

    async def handle(self, data: dict[str, Any]) -> str:
        return "quick"


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
