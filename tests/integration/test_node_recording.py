"""Node BullMQ against a recorded queue: the keep window, Node's retry, and lost jobs.

A bullworker runner records the queue (to SQLite) while Node produces, reads and
retries its jobs (tests/node: produce.mjs, get_jobs.mjs, retry.mjs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullworker import create_app, open_store
from bullworker.history.backlog import read_lost
from bullworker.history.store import JobStore
from bullworker.observe.metrics import install_metrics
from tests import helpers
from tests.helpers import eventually
from tests.integration.interop_app import reg
from tests.integration.metrics_support import scrape, value
from tests.integration.test_node_interop import (
    APP_SPEC,
    NODE_RANGE,
    QUEUE,
    ROOT,
    NodeScripts,
    bullworker_bin,
    same_json,
    subprocess_env,
)

pytestmark = [pytest.mark.node, pytest.mark.timeout(60)]


@contextlib.asynccontextmanager
async def recording_runner(
    prefix: str, redis_url: str, sqlite_path: Path, *, metrics: bool = False
) -> AsyncIterator[Any]:
    """The interop app's runner recording the test's queue to ``sqlite_path``; yields the
    metrics service with ``metrics``, else the runner."""
    config = helpers.app_config(
        bull_prefix=prefix, bull_queue=QUEUE, redis_url=redis_url, app_env="production",
        sqlite_path=str(sqlite_path), recorder_sweep_interval=0.5,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=reg)
    runner = app.create_runner()
    service = install_metrics(runner, port=0, host="127.0.0.1", refresh_interval=0.2) if metrics else None  # fmt: skip
    await runner.start()
    try:
        yield service if metrics else runner
    finally:
        await runner.stop(grace=5)
        await app.stop()


@contextlib.asynccontextmanager
async def store_at(path: Path) -> AsyncIterator[JobStore]:
    store = open_store(None, sqlite_path=str(path))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _rows(store: JobStore, job_id: str) -> list[int]:
    return sorted(row.attempt for row in await store.get(f"{QUEUE}:{job_id}"))


@NODE_RANGE
async def test_node_reads_a_recorded_job_right_after_it_finished(
    prefix: str, redis_url: str, tmp_path: Path, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    path = tmp_path / "jobs.sqlite3"
    async with recording_runner(prefix, redis_url, path), store_at(path) as store:
        [job] = await node.produce({"name": "EchoJob", "data": {"n": 1}})
        assert job["state"] == "completed", job  # getJobState right after waitUntilFinished
        assert same_json(job["returnvalue"], job["outcome"]["value"]), job
        await eventually(lambda: _equals(_rows(store, job["id"]), [1]))
        [row] = await store.get(f"{QUEUE}:{job['id']}")
        # Recorded, and still in Redis for Node (bull-board's Completed tab, getJob).
        [seen] = (await node.run("get_jobs.mjs", {"ids": [job["id"]]}))["jobs"]
        assert seen["found"] is True and seen["state"] == "completed", seen
        assert same_json(seen["returnvalue"], row.result), (seen, row.result)
        assert seen["finishedOn"] == round(row.completed_at.timestamp() * 1000)


async def test_a_job_retried_from_node_is_recorded_again(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    node = NodeScripts(prefix, redis_url)
    path = tmp_path / "jobs.sqlite3"
    async with recording_runner(prefix, redis_url, path), store_at(path) as store:
        [job] = await node.produce({"name": "FailingJob", "data": {"n": 1}})
        assert job["state"] == "failed", job
        await eventually(lambda: _equals(_rows(store, job["id"]), [1]))
        [retried] = (await node.run("retry.mjs", {"ids": [job["id"]]}))["jobs"]
        assert retried["found"] is True and retried["stateBefore"] == "failed", retried
        await eventually(lambda: _equals(_rows(store, job["id"]), [1, 2]))
        rows = await store.get(f"{QUEUE}:{job['id']}")
        assert {row.status for row in rows} == {"failed"}
        assert rows[0].completed_at != rows[1].completed_at


async def test_a_node_producer_removing_finished_jobs_is_counted(
    prefix: str, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bullworker.recorder")
    node = NodeScripts(prefix, redis_url)
    path = tmp_path / "jobs.sqlite3"
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    env = subprocess_env(prefix, redis_url, SQLITE_PATH=str(path))
    try:
        async with recording_runner(prefix, redis_url, path, metrics=True) as metrics:
            done, failed = await node.produce(
                {"name": "EchoJob", "data": {"n": 1}, "opts": {"removeOnComplete": True}},
                {"name": "FailingJob", "data": {"n": 2}, "opts": {"removeOnFail": True}},
            )
            outcome = done["outcome"]
            assert outcome["resolved"] is True and done["state"] == "unknown", outcome
            assert failed["outcome"]["resolved"] is False, failed

            async def counted() -> bool:
                lost = await read_lost(client, prefix, QUEUE)
                return (lost.completed, lost.failed) == (1, 1)

            await eventually(counted, timeout=15)
            await asyncio.sleep(0.5)  # a metrics refresh
            samples = await scrape(metrics.port)
            assert value(samples, "bullworker_jobs_lost_total", queue=QUEUE, status="completed") == 1  # fmt: skip
            assert value(samples, "bullworker_jobs_lost_total", queue=QUEUE, status="failed") == 1  # fmt: skip
        async with store_at(path) as store:
            assert await store.count(queue=QUEUE) == 0
        stats = await _cli(env, "stats", "--json")
        [queue] = json.loads(stats.stdout)
        assert queue["lost"]["completed"] == 1 and queue["lost"]["failed"] == 1, queue
        assert queue["lost"]["lastJob"] in (done["id"], failed["id"]), queue
        text = await _cli(env, "stats")
        assert "left Redis before they were recorded" in text.stderr, text.stderr
        doctor = await _cli(env, "doctor", "--json", ok=False)
        [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "lost jobs"]
        assert check["level"] == "WARN" and f"queue {QUEUE}: 2 finished job(s)" in check["message"]
        assert "removeOnComplete" in check["fix"], check
        logged = [r.getMessage() for r in caplog.records if "before it was recorded" in r.getMessage()]  # fmt: skip
        assert len(logged) == 2, logged  # once per queue and status
        assert any("removeOnComplete" in line for line in logged), logged
    finally:
        await client.aclose()


async def _cli(env: dict[str, str], *args: str, ok: bool = True) -> Any:
    proc = await asyncio.create_subprocess_exec(
        bullworker_bin(), *args, "--app", APP_SPEC, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    if ok:
        assert proc.returncode == 0, err.decode()
    return _Output(out.decode(), err.decode())


class _Output:
    def __init__(self, stdout: str, stderr: str) -> None:
        self.stdout, self.stderr = stdout, stderr


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
