"""Helpers shared by the operations-command tests (test_ops_*.py): processes, apps, rows.

Their fixtures (``pg_schema``, ``store``, ``env``) are in conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bullworker import App, create_app
from bullworker.history.store import JobRecord
from tests.helpers import app_config
from tests.integration import ops_app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.ops_app:app"
NOW = datetime.now(UTC)


async def bullworker(
    env: dict[str, str], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m bullworker ARGS --app ops_app``, in a thread so in-process runners go on."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def ok_json(env: dict[str, str], *args: str) -> Any:
    result = await bullworker(env, *args, "--app", APP, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_app(prefix: str, pg_dsn: str, pg_schema: str, **settings: Any) -> App:
    config = app_config(
        bull_prefix=prefix,
        app_env="production",
        database_url=pg_dsn,
        database_schema=pg_schema,
        **settings,
    )
    return create_app(config=config, enable_worker=True, registry=ops_app.registry)


@asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    runner = app.create_runner()
    await runner.start()
    try:
        yield app
    finally:
        await runner.stop(grace=1)
        await app.stop()


def row(queue_id: str, *, age: timedelta, **fields: Any) -> JobRecord:
    """A `_jobs` row that finished ``age`` ago."""
    done = NOW - age
    values: dict[str, Any] = {
        "queue": "ops",
        "queue_id": queue_id,
        "attempt": 1,
        "name": "OpsEcho",
        "data": {"n": queue_id},
        "status": "completed",
        "result": {"echo": {"n": queue_id}},
        "created_at": done - timedelta(seconds=2),
        "should_execute_at": done - timedelta(seconds=2),
        "executed_at": done - timedelta(seconds=1),
        "completed_at": done,
    }
    values.update(fields)
    return JobRecord(**values)


def failed_row(queue_id: str, *, age: timedelta = timedelta(minutes=5), **fields: Any) -> JobRecord:
    reason = f"RuntimeError: broken {queue_id}"
    return row(
        queue_id,
        age=age,
        status="failed",
        result={"reason": reason, "stack": ["Traceback ...", reason]},
        **fields,
    )
