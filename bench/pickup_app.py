"""The app of the pickup benchmark (``--app bench.pickup_app:app``); config from the environment.

``StampJob`` returns the wall clock at the moment its handler starts, which the
benchmark reads back from the queue's events stream (the ``completed`` event
carries the return value) and compares with the time just before the job was queued.
"""

from __future__ import annotations

import time
from typing import TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


class Item(TypedDict):
    i: int


@worker_job(registry=registry)
class StampJob(BaseJob[Item, float]):
    async def handle(self, data: Item) -> float:
        return time.time()


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
