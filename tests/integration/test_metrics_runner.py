"""Prometheus metrics, /healthz and /readyz of a runner in process, real HTTP requests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bullworker import App, BaseJob, JobRegistry, Runner, create_app, worker_job
from bullworker.config.redaction import redact_url
from bullworker.observe.metrics import MetricsService, install_metrics
from tests.helpers import (
    app_config,
    bull_queue,
    eventually,
    redis_address,
    redis_url_at,
    wait_finished,
)
from tests.integration.metrics_support import http_get, scrape, value, wait_ready
from tests.proxy import TcpProxy

reg = JobRegistry()


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


@worker_job(registry=reg)
class OkJob(BaseJob[dict[str, int], int]):
    async def handle(self, data: dict[str, int]) -> int:
        return data["n"]


@worker_job(registry=reg)
class FlakyJob(BaseJob[dict[str, Any], None]):
    async def handle(self, data: dict[str, Any]) -> None:
        raise ValueError("nope")


@worker_job(registry=reg)
class HoldJob(BaseJob[dict[str, Any], str]):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def handle(self, data: dict[str, Any]) -> str:
        self.gate.entered.set()
        await self.gate.release.wait()
        return "released"


def make_app(prefix: str, tmp_path: Path, **settings: Any) -> App:
    config = app_config(
        bull_prefix=prefix,
        app_env="production",
        sqlite_path=str(tmp_path / "jobs.sqlite3"),
        recorder_sweep_interval=0.5,
        **settings,
    )
    return create_app(
        config=config, enable_worker=True, registry=reg, providers=[Gate], tracing=False
    )


@pytest.fixture
async def served(prefix: str, tmp_path: Path) -> AsyncIterator[tuple[App, Runner, MetricsService]]:
    app = make_app(prefix, tmp_path)
    runner = app.create_runner()
    service = install_metrics(runner, port=0, host="127.0.0.1", refresh_interval=0.2)
    await runner.start()
    yield app, runner, service
    await runner.stop(grace=1)
    await app.stop()


async def test_job_metrics_recorder_and_queue_depths(
    served: tuple[App, Runner, MetricsService], prefix: str
) -> None:
    app, _, service = served
    port = service.port
    ws = app.worker_service
    gate = app.resolve(Gate)
    await ws.queue_job(OkJob, {"n": 1})
    await ws.queue_job(OkJob, {"n": 2}, delay=1500)  # its wait counts from when it was due
    await ws.queue_job(FlakyJob, {}, attempts=2, backoff=10)
    await ws.queue_job(HoldJob, {})
    await asyncio.wait_for(gate.entered.wait(), 10)
    samples = await scrape(port)
    assert value(samples, "bullworker_jobs_in_progress", queue="default", name="HoldJob") == 1
    gate.release.set()
    later = await ws.queue_job(OkJob, {"n": 3}, delay=60_000)

    def jobs(name: str, outcome: str) -> float | None:
        return value(samples, "bullworker_jobs_total", queue="default", name=name, outcome=outcome)

    async def all_counted() -> bool:
        nonlocal samples
        samples = await scrape(port)
        return (jobs("OkJob", "completed"), jobs("FlakyJob", "failed"), jobs("HoldJob", "completed")) == (2, 2, 1)  # fmt: skip

    await eventually(all_counted, timeout=15)
    assert jobs("OkJob", "failed") is None
    labels = {"queue": "default"}
    assert value(samples, "bullworker_jobs_in_progress", **labels, name="HoldJob") == 0
    assert value(samples, "bullworker_job_retries_total", **labels, name="FlakyJob") == 1
    assert value(samples, "bullworker_job_retries_total", **labels, name="OkJob") is None
    assert value(samples, "bullworker_job_duration_seconds_count", **labels, name="OkJob") == 2
    assert value(samples, "bullworker_job_duration_seconds_count", **labels, name="FlakyJob") == 2
    # Waits: first runs only; the delayed job waited well under a second after it was due.
    assert value(samples, "bullworker_job_wait_seconds_count", **labels, name="FlakyJob") == 1
    fast = value(samples, "bullworker_job_wait_seconds_bucket", **labels, name="OkJob", le="1.0")
    assert fast == 2
    assert value(samples, "bullworker_event_loop_lag_seconds") is not None
    assert all(name.startswith("bullworker_") for name, _ in samples)

    # The recorder leader reports rows, lag and depths; the delayed job shows as delayed.
    def depths() -> dict[str, float]:
        return {
            dict(labelset)["state"]: v
            for (metric, labelset), v in samples.items()
            if metric == "bullworker_queue_jobs" and ("queue", "default") in labelset
        }

    settled = {  # the recorded jobs stay in Redis for the keep window
        "active": 0, "completed": 3, "delayed": 1, "failed": 1, "prioritized": 0, "waiting": 0,
        "waiting-children": 0,
    }  # fmt: skip

    async def recorded() -> bool:
        nonlocal samples
        samples = await scrape(port)
        rows = value(samples, "bullworker_recorder_rows_written_total", **labels)
        return rows == 4 and depths() == settled

    await eventually(recorded, timeout=15)
    assert value(samples, "bullworker_recorder_leader", **labels) == 1
    lag = value(samples, "bullworker_recorder_lag_seconds", **labels)
    assert lag is not None and 0 <= lag < 5
    for status in ("completed", "failed"):  # none left Redis unrecorded
        assert value(samples, "bullworker_jobs_lost_total", **labels, status=status) == 0
    async with bull_queue("default", prefix) as queue:
        assert await queue.getJobState(later) == "delayed"


async def test_only_the_recorder_leader_reports_queue_wide_gauges(
    served: tuple[App, Runner, MetricsService], prefix: str, tmp_path: Path
) -> None:
    app, _, service = served
    await eventually(lambda: service.reports("default"), timeout=10)
    other_app = make_app(prefix, tmp_path)
    other = other_app.create_runner()
    follower = install_metrics(other, port=0, host="127.0.0.1", refresh_interval=0.2)
    await other.start()
    try:
        await app.worker_service.queue_job(OkJob, {"n": 1}, delay=60_000)

        async def leader_sees_it() -> bool:
            samples = await scrape(service.port)
            return value(samples, "bullworker_queue_jobs", queue="default", state="delayed") == 1

        await eventually(leader_sees_it, timeout=10)
        samples = await scrape(follower.port)
        assert value(samples, "bullworker_recorder_leader", queue="default") == 0
        assert not any(name == "bullworker_queue_jobs" for name, _ in samples)
        assert not any(name == "bullworker_recorder_lag_seconds" for name, _ in samples)
    finally:
        await other.stop(grace=1)
        await other_app.stop()


async def test_healthz_and_readyz(served: tuple[App, Runner, MetricsService]) -> None:
    _, runner, service = served
    port = service.port
    await wait_ready(port)
    assert await asyncio.to_thread(http_get, port, "/healthz") == (
        200,
        "text/plain; charset=utf-8",
        "ok\n",
    )
    status, content_type, body = await asyncio.to_thread(http_get, port, "/readyz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ready", "reason": "ready"}
    assert (await asyncio.to_thread(http_get, port, "/nope"))[0] == 404

    # A blocked event loop: the server thread still answers, with 503.
    answer: list[tuple[int, str, str]] = []

    def probe() -> None:
        time.sleep(1.4)  # the loop has been blocked for ~1.4 s by then
        answer.append(http_get(port, "/readyz"))

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(2.0)  # blocks the event loop on purpose
    thread.join(5)
    [(status, _, body)] = answer
    assert status == 503
    reason = json.loads(body)["reason"]
    assert reason.startswith("event loop blocked for "), reason
    await eventually(lambda: service.monitor.lag < 1.0, timeout=5)
    assert (await asyncio.to_thread(http_get, port, "/readyz"))[0] == 200

    # A worker that no longer runs.
    await runner.workers["default"].close()
    status, _, body = await asyncio.to_thread(http_get, port, "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not ready",
        "reason": "worker of queue default is not running",
    }
    assert (await asyncio.to_thread(http_get, port, "/healthz"))[0] == 200


async def test_readyz_is_503_while_redis_is_unreachable(prefix: str, tmp_path: Path) -> None:
    proxy = TcpProxy(*redis_address())
    await proxy.start()
    via_proxy = redis_url_at(proxy.port)
    app = make_app(prefix, tmp_path, redis_url=via_proxy, redis_timeout=2.0, record_jobs=False)
    runner = app.create_runner()
    service = install_metrics(runner, port=0, host="127.0.0.1", refresh_interval=0.2)
    await runner.start()
    try:
        await wait_ready(service.port)  # the workers run once they named their connections
        await proxy.cut()
        started = time.monotonic()
        status, _, body = await asyncio.to_thread(http_get, service.port, "/readyz")
        assert time.monotonic() - started < 3  # a short PING timeout, not the client's
        assert status == 503
        reason = json.loads(body)["reason"]
        assert reason.startswith(f"Redis at {redact_url(via_proxy)} unreachable ("), reason
        await proxy.restore()

        async def ready() -> bool:
            return (await asyncio.to_thread(http_get, service.port, "/readyz"))[0] == 200

        await eventually(ready, timeout=15)
        job_id = await app.worker_service.queue_job(OkJob, {"n": 5})
        async with bull_queue("default", prefix) as queue:
            assert (await wait_finished(queue, job_id)).returnvalue == 5
    finally:
        await runner.stop(grace=1)
        await app.stop()
        await proxy.cut()


async def test_stalled_jobs_are_counted(prefix: str, tmp_path: Path) -> None:
    settings = {"worker_lock_duration": 1000, "worker_stalled_interval": 500, "record_jobs": False}
    first = make_app(prefix, tmp_path, **settings)
    runner = first.create_runner()
    await runner.start()
    job_id = await first.worker_service.queue_job(HoldJob, {})
    await asyncio.wait_for(first.resolve(Gate).entered.wait(), 10)
    await runner.stop(grace=0.2)  # force-closed: the job stays active and stalls
    second = make_app(prefix, tmp_path, **settings)
    second.resolve(Gate).release.set()
    rerun = second.create_runner()
    service = install_metrics(rerun, port=0, host="127.0.0.1")
    await rerun.start()
    try:
        async with bull_queue("default", prefix) as queue:
            assert (await wait_finished(queue, job_id)).returnvalue == "released"
        samples = await scrape(service.port)
        assert value(samples, "bullworker_jobs_stalled_total", queue="default") == 1
        done = {"queue": "default", "name": "HoldJob", "outcome": "completed"}
        assert value(samples, "bullworker_jobs_total", **done) == 1
    finally:
        await rerun.stop(grace=1)
        await second.stop()
        await first.stop()
