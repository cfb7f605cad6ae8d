"""An app for recorder tests run as separate processes; config from the environment."""

from __future__ import annotations

import asyncio
from typing import Any

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()


@worker_job(registry=registry)
class TickJob(BaseJob[dict[str, Any], dict[str, Any]]):
    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {"n": data.get("n")}


@worker_job(registry=registry)
class SlowJob(BaseJob[dict[str, Any], dict[str, Any]]):
    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(data.get("seconds", 1.0)))
        return {"n": data.get("n")}


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
