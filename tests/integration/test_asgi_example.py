"""examples/fastapi_app.py served by uvicorn, as docs/asgi.md runs it: what it prints."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import bullworker_env, eventually

pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_uvicorn_shows_what_the_runner_does(prefix: str, tmp_path: Path) -> None:
    """The example configures no logging: bullworker's default handler shows the runner."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = bullworker_env(BULL_PREFIX=prefix, SQLITE_PATH=str(tmp_path / "jobs.sqlite3"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app:api", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def output() -> str:
            return log.read_text()

        await eventually(
            lambda: "Application startup complete" in output() or proc.poll() is not None, 30
        )
        assert "Application startup complete" in output(), output()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/greetings", json={"name": "Ada"})
        assert response.status_code == 202, response.text
        await eventually(lambda: "GreetJob: Hello, Ada!" in output(), 15)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = output().splitlines()
    [started] = [line for line in lines if "runner started: " in line]
    assert " INFO " in started and " bullworker.runner: " in started, started
    assert "; queues default; concurrency 10; jobs GreetJob; " in started, started
    assert f"recording to SQLite {tmp_path / 'jobs.sqlite3'} (leader)" in started
    assert any(" INFO " in line and "greetings: GreetJob: Hello, Ada!" in line for line in lines)
    assert any("bullworker.runner: stopping: " in line for line in lines)
    assert any("bullworker.runner: runner stopped" in line for line in lines)
    # uvicorn's own lines keep uvicorn's format, once each: the default handler is the root's.
    assert sum("Application startup complete" in line for line in lines) == 1
    assert lines.index(next(x for x in lines if "runner started" in x)) < lines.index(
        next(x for x in lines if "Application startup complete" in x)
    )
