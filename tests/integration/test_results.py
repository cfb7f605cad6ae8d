"""Waiting for a job's result: in Python (wait=True, handles), from the CLI, whoever runs it.

A bullworker runner in this process, a Node BullMQ 6.7 worker, a job that
finished before the wait began, and one the recorder already moved to
``_jobs``: every case answers, none loses its wake-up.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bullworker import JobFailedError, ResultUnavailable, create_app
from bullworker.producer.results import JobHandle
from tests import helpers
from tests.integration.interop_app import EchoJob, FailingJob, GreetJob, echo_result, reg
from tests.integration.test_node_interop import (
    APP_SPEC,
    ROOT,
    NodeScripts,
    bullworker_bin,
    config_for,
    last_line,
    python_runner,
    reap,
    subprocess_env,
)

pytestmark = [pytest.mark.node, pytest.mark.timeout(40)]


async def test_wait_returns_the_typed_result(prefix: str, redis_url: str) -> None:
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        async with python_runner(prefix, redis_url):
            greeting = await app.worker_service.queue_job(
                GreetJob, {"name": "ada", "times": 2}, wait=True, timeout=10
            )
            handle = await app.worker_service.queue_job(EchoJob, {"n": 1})
            assert isinstance(handle, str) and isinstance(handle, JobHandle)
            assert handle.queue == "interop" and handle.id == str(handle)
            echoed = await handle.result(timeout=10)
    finally:
        await app.stop()
    assert greeting == {"greeting": "hello ada hello ada"}
    assert echoed == echo_result({"n": 1})


async def test_a_failure_raises_with_the_remote_reason_and_stack(
    prefix: str, redis_url: str
) -> None:
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        async with python_runner(prefix, redis_url):
            with pytest.raises(JobFailedError) as failed:
                await app.worker_service.queue_job(FailingJob, {}, wait=True, timeout=10)
    finally:
        await app.stop()
    assert failed.value.reason == "ValueError: python says no"
    assert failed.value.status == "failed"
    assert "python says no" in failed.value.stack[-1]


async def test_timeout_when_nothing_runs_the_job(prefix: str, redis_url: str) -> None:
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"did not finish in 0\.5 s"):
            await app.worker_service.queue_job(EchoJob, {}, wait=True, timeout=0.5)
        assert time.monotonic() - started < 3
    finally:
        await app.stop()


async def test_a_job_finished_before_the_wait_is_answered(prefix: str, redis_url: str) -> None:
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        async with python_runner(prefix, redis_url):
            handle = await app.worker_service.queue_job(EchoJob, {"early": True})
            for _ in range(100):
                if await app.worker_service.job_state("interop", handle.id) == "completed":
                    break
                await asyncio.sleep(0.05)
        assert await handle.result(timeout=2) == echo_result({"early": True})
    finally:
        await app.stop()


async def test_a_recorded_job_is_answered_from_jobs(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    config = helpers.app_config(
        bull_prefix=prefix,
        bull_queue="interop",
        redis_url=redis_url,
        app_env="production",
        sqlite_path=str(tmp_path / "jobs.db"),
        keep_completed=0,  # no keep window: the jobs leave Redis once recorded
        keep_failed=0,
    )
    app = create_app(config=config, enable_worker=True, registry=reg)
    async with app:
        await app.start(run_worker=True)
        handle = await app.worker_service.queue_job(EchoJob, {"recorded": 1})
        failing = await app.worker_service.queue_job(FailingJob, {})
        assert await handle.result(timeout=10) == echo_result({"recorded": 1})
        for _ in range(100):  # until the recorder has removed both from Redis
            states = [await app.worker_service.job_state("interop", h) for h in (handle, failing)]
            if states == [None, None]:
                break
            await asyncio.sleep(0.1)
        assert states == [None, None]
        assert await handle.result(timeout=2) == echo_result({"recorded": 1})
        with pytest.raises(JobFailedError, match="python says no"):
            await failing.result(timeout=2)
        with pytest.raises(ResultUnavailable, match="not in Redis and has no row"):
            await app.worker_service.result_of("interop", "no-such-job", timeout=2)


async def test_a_node_worker_answers_a_python_wait(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        consumer = asyncio.create_task(node.consume(1))
        result: Any = await app.worker_service.queue_job(
            EchoJob, {"to": "node"}, wait=True, timeout=10
        )
        [seen] = await consumer
    finally:
        await app.stop()
    assert result == seen["returned"] and result["by"] == "node"


async def _cli(prefix: str, redis_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        bullworker_bin(), "queue", *args, "--app", APP_SPEC,
        cwd=ROOT, env=subprocess_env(prefix, redis_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        await reap(proc)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_wait_prints_the_result_or_the_reason(prefix: str, redis_url: str) -> None:
    async with python_runner(prefix, redis_url):
        code, out, err = await _cli(
            prefix, redis_url, "GreetJob", "--data", '{"name": "bo", "times": 1}', "--wait"
        )
        assert (code, json.loads(last_line(out.encode()))) == (0, {"greeting": "hello bo"}), err
        code, out, err = await _cli(prefix, redis_url, "FailingJob", "--wait", "--json")
        entry = json.loads(out)
        assert code == 1 and entry["status"] == "failed", (out, err)
        assert entry["reason"] == "ValueError: python says no"
        code, out, err = await _cli(prefix, redis_url, "FailingJob", "--wait")
        assert code == 1 and out == "" and "failed: ValueError: python says no" in err
    code, out, err = await _cli(prefix, redis_url, "EchoJob", "--wait", "--timeout", "0.5")
    assert code == 1 and "did not finish in 0.5 s" in err, (out, err)
