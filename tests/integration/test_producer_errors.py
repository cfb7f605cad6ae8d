"""A producer pointed at something that is not Redis gets QueueUnavailable, not a traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from bullworker import AppConfig, PayloadError, QueueUnavailable
from tests.integration.runner_support import SyncJob, make_app


@pytest.fixture
async def not_redis() -> AsyncIterator[int]:
    """A TCP server that answers every connection like an HTTP proxy refusing it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_queue_job_against_a_server_that_is_not_redis(prefix: str, not_redis: int) -> None:
    app = make_app(prefix, redis_url=None, redis_port=not_redis, redis_timeout=2)
    with pytest.raises(
        QueueUnavailable,
        match=r"could not queue SyncJob: Redis at .*: InvalidResponse: Protocol [Ee]rror",
    ):
        await app.worker_service.queue_job(SyncJob, {"n": 1})
    await app.stop()


async def test_the_cli_says_so_in_one_line(prefix: str, not_redis: int) -> None:
    ours = {name.upper() for name in AppConfig.settings()} | {"BULLWORKER_APP"}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(
        BULL_PREFIX=prefix, APP_ENV="production", REDIS_PORT=str(not_redis), REDIS_TIMEOUT="2"
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bullworker", "queue", "CliEmail", "--app",
         "tests.integration.cli_app:app", "--data", '{"to": "a@b.c", "subject": "S"}'],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line.startswith("error: could not queue CliEmail: Redis at redis://127.0.0.1:")
    assert "InvalidResponse: Protocol error" in line.replace("Error", "error")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("queue", ["bad:queue", ""])
async def test_a_queue_given_by_name_is_checked(prefix: str, queue: str) -> None:
    app = make_app(prefix)
    with pytest.raises(PayloadError, match="must be a non-empty name without ':'"):
        await app.worker_service.queue_job_by_name("SyncJob", {"n": 1}, queue=queue)
    with pytest.raises(PayloadError, match="must be a non-empty name without ':'"):
        await app.worker_service.queue_job_by_name("NotRegistered", {}, queue=queue, force=True)
    await app.stop()
