"""Small helpers shared by the tests, and the one place that says which servers they use.

``REDIS_URL`` and ``PG_DSN`` come from ``BULLWORKER_TEST_REDIS_URL`` and
``BULLWORKER_TEST_DATABASE_URL`` (``scripts/test`` sets both). Whatever a test
builds takes them from here: configs (`app_config`), raw bullmq queues
(`bull_queue`), the environment of ``bullworker`` subprocesses (`bullworker_env`)
and of the Node scripts (`node_env`); a test that needs another address (a
proxy, a private redis-server) derives it with `redis_url_at` / `pg_dsn_at`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bullmq import Queue

from bullworker import AppConfig

REDIS_URL = os.environ.get("BULLWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_DSN = os.environ.get("BULLWORKER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: A seed node of the Redis Cluster of tests/integration/test_cluster.py (scripts/test starts one).
REDIS_CLUSTER_URL = os.environ.get("BULLWORKER_TEST_REDIS_CLUSTER_URL", "")


def app_config(**settings: Any) -> AppConfig:
    """An AppConfig of ``settings`` on the test Redis; the environment is not read."""
    settings.setdefault("redis_url", REDIS_URL)
    return AppConfig(environ={}, **settings)


def bullworker_env(**settings: str) -> dict[str, str]:
    """The environment of a ``bullworker`` subprocess: the test Redis, then ``settings``.

    Every variable AppConfig reads and every ``BULLWORKER_*`` one is dropped from
    the inherited environment first, so that none of the developer's leaks in.
    """
    ours = {name.upper() for name in AppConfig.settings()}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("BULLWORKER_")}
    env.update(REDIS_URL=REDIS_URL, PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


def node_env(prefix: str, queue: str, redis_url: str = REDIS_URL) -> dict[str, str]:
    """The environment of a tests/node script (see tests/node/common.mjs)."""
    return {**os.environ, "REDIS_URL": redis_url, "PREFIX": prefix, "QUEUE": queue}


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _at(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{port}"))


def redis_address() -> tuple[str, int]:
    """Host and port of the test Redis (the target of a TcpProxy)."""
    return _address(REDIS_URL, 6379)


def redis_url_at(port: int) -> str:
    """The test Redis URL (credentials, database) with 127.0.0.1:``port`` as its address."""
    return _at(REDIS_URL, port)


def pg_address() -> tuple[str, int]:
    """Host and port of the test PostgreSQL (the target of a TcpProxy)."""
    return _address(PG_DSN, 5432)


def pg_dsn_at(port: int) -> str:
    """The test PostgreSQL DSN (user, database) with 127.0.0.1:``port`` as its address."""
    return _at(PG_DSN, port)


@asynccontextmanager
async def bull_queue(name: str, prefix: str, redis_url: str = REDIS_URL) -> AsyncIterator[Any]:
    """A raw bullmq Queue on the test Redis, for inspecting what the runner did."""
    queue = Queue(name, {"prefix": prefix, "connection": redis_url})
    try:
        yield queue
    finally:
        await queue.close()


async def wait_finished(queue: Any, job_id: str, timeout: float = 10.0) -> Any:
    """Poll until the job is completed or failed for good; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await queue.getJob(job_id)
        if job is not None and job.finishedOn:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float = 10.0
) -> None:
    """Poll ``check`` until it is true, or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")
