"""The bullworker app the benchmarks run (``--app bench.app:app``); config from the environment.

The jobs are what a user would write: a typed payload validated on the way in,
a handler that does nothing (``NoopJob``) or waits 1 ms of I/O (``SleepJob``).
"""

from __future__ import annotations

import asyncio
import os
from typing import TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


class Item(TypedDict):
    i: int


@worker_job(registry=registry)
class NoopJob(BaseJob[Item, None]):
    async def handle(self, data: Item) -> None:
        return None


@worker_job(registry=registry)
class SleepJob(BaseJob[Item, None]):
    async def handle(self, data: Item) -> None:
        await asyncio.sleep(0.001)


#: ``BENCH_TRACING=0`` turns the tracing hook off (it is on when opentelemetry is importable).
_tracing = False if os.environ.get("BENCH_TRACING") == "0" else None
app = create_app(config=AppConfig(), enable_worker=True, registry=registry, tracing=_tracing)
