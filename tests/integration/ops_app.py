"""An app for the operations-command tests; its config comes from the environment."""

from __future__ import annotations

import os
from typing import Any, TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

registry = JobRegistry()
broken_registry = JobRegistry()


class FlakyIn(TypedDict):
    flag: str


@worker_job(registry=registry)
class OpsEcho(BaseJob[dict[str, Any], dict[str, Any]]):
    QUEUE_NAME = "ops"

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"echo": data}


@worker_job(registry=registry)
class OpsFlaky(BaseJob[FlakyIn, str]):
    """Fails until the file named by ``flag`` exists: the test "fixes" it, then retries."""

    QUEUE_NAME = "ops"

    async def handle(self, data: FlakyIn) -> str:
        if not os.path.exists(data["flag"]):
            raise RuntimeError(f"flag {os.path.basename(data['flag'])} is missing")
        return "fixed"


@worker_job(registry=registry)
class OpsNightly(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "ops"
    CRON_SCHEDULE = "0 3 * * *"

    async def handle(self, data: dict[str, Any]) -> None:
        return None


class Unregistered:
    """Nobody provides it: a job needing it cannot be built."""


@worker_job(registry=broken_registry)
class OpsNeedsSomething(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "ops"

    def __init__(self, thing: Unregistered) -> None:
        self.thing = thing

    async def handle(self, data: dict[str, Any]) -> None:
        return None


app = create_app(config=AppConfig(), enable_worker=True, registry=registry)
broken_app = create_app(config=AppConfig(), enable_worker=True, registry=broken_registry)
