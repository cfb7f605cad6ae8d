"""Unit tests of the reliability fixes (the fault suite in tests/faults runs them for real)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from typing import Any

import pytest
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError

from bullworker import AppConfig, ConfigError
from bullworker.config.settings import RedisSettings
from bullworker.runtime.watchdog import LoopWatchdog, job_task_name
from bullworker.runtime.worker import BullWorker
from bullworker.transport.connection import (
    RETRY_CAP,
    _Sentinel,
    bullmq_connection,
    connection_kwargs,
    retry_policy,
)


async def test_worker_clients_use_bullworkers_retry_policy() -> None:
    worker = BullWorker("q", lambda job, token: None, {"autorun": False, "connection": {}})
    try:
        for client in (worker.client, worker.bclient):
            retry = client.connection_pool.connection_kwargs["retry"]
            assert type(retry) is type(retry_policy())
            assert retry._backoff.compute(10) == RETRY_CAP  # not bullmq's 20 s
    finally:
        await worker.close()


async def test_refused_credentials_are_not_retried() -> None:
    calls = 0

    async def do() -> None:
        nonlocal calls
        calls += 1
        raise AuthenticationError("invalid username-password pair")

    async def fail(error: Exception) -> None: ...

    with pytest.raises(AuthenticationError):
        await retry_policy().call_with_retry(do, fail)
    assert calls == 1


@pytest.mark.parametrize(
    ("cause", "tries"),
    [
        (ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] certificate required"), 1),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), 1),
        (AuthenticationError("sentinel refused the credentials"), 1),  # wrapped by redis-py
        (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), 3),  # a server went away
        (ConnectionResetError(104, "Connection reset by peer"), 3),
    ],
)
async def test_tls_refusals_are_not_retried(cause: Exception, tries: int) -> None:
    calls = 0

    async def do() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            try:
                raise cause
            except Exception:
                raise RedisConnectionError("Error while reading from 127.0.0.1:6379") from None
        return "ok"

    async def fail(error: Exception) -> None: ...

    if tries == 1:
        with pytest.raises(RedisConnectionError):
            await retry_policy().call_with_retry(do, fail)
    else:
        assert await retry_policy().call_with_retry(do, fail) == "ok"
    assert calls == tries


async def test_connection_errors_are_retried_at_most_a_second_apart() -> None:
    calls: list[float] = []

    async def do() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise RedisConnectionError("refused")
        return "ok"

    async def fail(error: Exception) -> None: ...

    assert await retry_policy().call_with_retry(do, fail) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap < RETRY_CAP + 0.2 for gap in gaps)


@pytest.mark.parametrize(
    "flags", ["master,failover_in_progress", {"master", "failover_in_progress"}]
)
def test_no_master_while_a_failover_is_in_progress(flags: Any) -> None:
    sentinel = _Sentinel([("127.0.0.1", 1)])
    state = {"is_master": True, "is_sdown": False, "is_odown": False, "num-other-sentinels": 0}
    assert sentinel.check_master_state({**state, "flags": "master"}, "m")
    assert not sentinel.check_master_state({**state, "flags": flags}, "m")


def test_sentinel_pools_check_the_master_as_asked() -> None:
    settings = RedisSettings(sentinel_host="127.0.0.1", sentinel_port=1)
    assert bullmq_connection(settings)["connection_pool"].master_check_interval == 0.0
    assert connection_kwargs(settings)["connection_pool"].master_check_interval == 1.0


async def test_watchdog_names_the_job_that_blocks_the_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bullworker.watchdog")
    watchdog = LoopWatchdog(0.2, interval=0.05)
    await watchdog.start()

    async def blocking_job() -> None:
        time.sleep(0.6)

    try:
        await asyncio.create_task(blocking_job(), name=job_task_name("SlowJob", 7, "default"))
        await asyncio.sleep(0.2)
    finally:
        await watchdog.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert watchdog.episodes == 1
    assert any(
        "by job SlowJob id=7 queue=default at" in m and "in blocking_job" in m for m in messages
    )
    assert any("ran again after" in m for m in messages)


def test_config_rejects_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match="DATABASE_SCHEMA='a;b' is not a plain identifier"):
        AppConfig(environ={"DATABASE_SCHEMA": "a;b"})
    with pytest.raises(ConfigError, match=r"DATABASE_URL='mysql://u:\*\*\*@h/db'"):
        AppConfig(environ={"DATABASE_URL": "mysql://u:secret@h/db"})
    with pytest.raises(ConfigError, match="LOOP_BLOCK_WARNING"):
        AppConfig(environ={"LOOP_BLOCK_WARNING": "-1"})
    assert AppConfig(environ={"DATABASE_SCHEMA": "jobs_2"}).database_schema == "jobs_2"
