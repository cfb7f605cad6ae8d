"""Helpers shared by the cron tests (test_cron_*.py): configs, runners, scheduler reads."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bullworker import AppConfig, JobRegistry, Runner, create_app
from tests.helpers import app_config, bullworker_env

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cron_app:app"


def config_for(prefix: str, **settings: Any) -> AppConfig:
    settings.setdefault("record_jobs", False)  # finished jobs stay in Redis for inspection
    return app_config(bull_prefix=prefix, app_env="production", **settings)


def tick_of(job_id: str) -> int:
    """The scheduled time (ms) of a scheduler's job: ``repeat:<scheduler id>:<millis>``."""
    assert job_id.startswith("repeat:"), job_id
    return int(job_id.rsplit(":", 1)[1])


async def schedulers(queue: Any) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in await queue.getJobSchedulers()}


async def finished_runs(queue: Any, name: str) -> list[Any]:
    """Completed jobs of ``name``, oldest tick first; fails if any run failed."""
    failed = [j for j in await queue.getJobs(["failed"]) if j.name == name]
    assert failed == [], [j.failedReason for j in failed]
    jobs = [j for j in await queue.getJobs(["completed"]) if j.name == name]
    return sorted(jobs, key=lambda j: tick_of(j.id))


def lateness(jobs: list[Any]) -> list[int]:
    """processedOn - scheduled tick, in ms."""
    return [int(j.processedOn) - tick_of(j.id) for j in jobs]


def report(label: str, late: list[int]) -> None:
    print(
        f"\n{label}: {len(late)} fires, late by median {statistics.median(late):.0f} ms, "
        f"max {max(late)} ms: {late}"
    )


@contextlib.asynccontextmanager
async def running(prefix: str, registry: JobRegistry, **settings: Any) -> AsyncIterator[Runner]:
    app = create_app(config=config_for(prefix, **settings), enable_worker=True, registry=registry)
    runner = app.create_runner()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace=5)
        await app.stop()


def subprocess_env(prefix: str, **settings: str) -> dict[str, str]:
    """The environment of a ``bullworker`` subprocess; recording off unless ``settings`` say."""
    base = {"BULL_PREFIX": prefix, "APP_ENV": "production", "RECORD_JOBS": "false"}
    return bullworker_env(**{**base, **settings})
