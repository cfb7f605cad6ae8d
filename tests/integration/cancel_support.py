"""Helpers of the cancel tests (test_ops_cancel.py, test_runner_cancel.py): the app, runners
started as ``bullworker start`` processes, the ``bullworker`` command."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bullworker import App, create_app
from tests.helpers import app_config, eventually
from tests.integration import cancel_app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cancel_app:app"
QUEUE = "cancels"


@asynccontextmanager
async def local_app(
    prefix: str, pg_dsn: str, pg_schema: str, **settings: Any
) -> AsyncIterator[App]:
    """The cancel app in this process (to queue jobs, or to call the library)."""
    config = app_config(
        bull_prefix=prefix,
        app_env="production",
        database_url=pg_dsn,
        database_schema=pg_schema,
        **settings,
    )
    app = create_app(config=config, enable_worker=True, registry=cancel_app.registry)
    try:
        yield app
    finally:
        await app.worker_service.close()


async def bullworker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bullworker ARGS --app cancel_app`` in a thread."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bullworker", *args, "--app", APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def cancel(env: dict[str, str], job_id: str, *args: str) -> tuple[int, Any, str]:
    """``bullworker jobs cancel <cancels:job_id> ARGS --json``: exit status, JSON, stderr."""
    done = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{job_id}", *args, "--json")
    return done.returncode, json.loads(done.stdout) if done.stdout else None, done.stderr


@asynccontextmanager
async def runner_process(
    env: dict[str, str], log: Path, *args: str, processes: int = 1
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """``bullworker start ARGS`` in another process, until every runner has started."""
    command = [sys.executable, "-m", "bullworker", "start", "--app", APP, *args]
    env = {"SHUTDOWN_GRACE": "2", "RECORDER_SWEEP_INTERVAL": "0.5", **env}
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        await eventually(
            lambda: log.read_text().count("runner started") >= processes or proc.poll() is not None,
            timeout=30,
        )
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def marks(path: Path) -> list[str]:
    """The lines a handler of cancel_app wrote (none if it never ran)."""
    return path.read_text().splitlines() if path.exists() else []
