"""Bad jobs get a clear error and hurt no other job (one runner, a stream of good jobs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, PayloadError, Runner, create_app
from bullworker.app import App
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.workload import ROOT, ExecLog, dup_rows, store_rows, until, with_store

GROUP = "Bad input"
GOOD = 10  # good jobs queued before and after each bad one


@dataclass
class Harness:
    app: App
    runner: Runner
    prefix: str
    store: Any
    exec_log: ExecLog
    sent: int = 0

    async def good(self, first: int) -> None:
        items = [{"n": n, "sleep": 0.05} for n in range(first, first + GOOD)]
        await self.app.worker_service.queue_jobs(fault_app.FaultJob, items)
        self.sent += GOOD

    async def finish(self, scenario: Scenario, bad_ids: list[str], **extra: Any) -> list[Any]:
        """Wait for the good jobs and the bad ones; fill the row; return the bad jobs."""
        numbers = set(range(2 * GOOD))
        await until(lambda: numbers <= self.exec_log.done(), 20, "every good job ran")
        total = self.sent + len(bad_ids)
        await until(lambda: _count_is(self.store, total), 20, "every job recorded")
        rows = await store_rows(self.store)
        # Finished jobs leave Redis once recorded: the bad ones are read from `_jobs`.
        bad = [(await self.store.get(f"default:{job_id}"))[0] for job_id in bad_ids]
        scenario.figures(
            sent=total, completed=len(numbers & self.exec_log.done()) + len(bad), recorded=len(rows),
            dup_executed=self.exec_log.dup_executed(), dup_rows=dup_rows(rows), **extra,
        )  # fmt: skip
        assert self.exec_log.dup_executed() == 0
        assert dup_rows(rows) == 0 and len(rows) == total
        return bad


def reason(row: Any) -> str:
    return str(row.result["reason"])


async def _count_is(store: Any, n: int) -> bool:
    return bool(await store.count() == n)


@pytest.fixture
async def harness(prefix: str, tmp_path: Path, exec_log: ExecLog) -> AsyncIterator[Harness]:
    config = AppConfig(
        environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production",
        sqlite_path=str(tmp_path / "jobs.sqlite3"), recorder_sweep_interval=1.0,
        loop_block_warning=0.5, max_payload_bytes=4096,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    runner = app.create_runner()
    await runner.start()
    store = await with_store(None, sqlite_path=config.sqlite_path)
    try:
        yield Harness(app, runner, prefix, store, exec_log)
    finally:
        await runner.stop(grace=1)
        await app.stop()
        await store.close()


def node_add(prefix: str, jobs: list[dict[str, Any]]) -> list[str]:
    """Queue jobs from Node BullMQ (tests/node/fault_produce.mjs)."""
    node = shutil.which("node")
    assert node, "node is not installed"
    result = subprocess.run(
        [node, "fault_produce.mjs", json.dumps(jobs)],
        cwd=ROOT / "tests" / "node", capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "REDIS_URL": REDIS_URL, "PREFIX": prefix, "QUEUE": "default"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [str(i) for i in json.loads(result.stdout)["ids"]]


async def test_invalid_payload_from_python(scenario: Scenario, harness: Harness) -> None:
    """Payload that fails validation, from Python."""
    scenario.injected = "queue_job(StrictJob, {'email': 5})"
    await harness.good(0)
    with pytest.raises(PayloadError) as error:
        await harness.app.worker_service.queue_job(fault_app.StrictJob, {"email": 5})
    await harness.good(GOOD)
    await harness.finish(scenario, [])
    message = str(error.value)
    scenario.explanation = f"`queue_job` raised `PayloadError: {message}`; nothing reached Redis."
    assert message.startswith("StrictJob: invalid payload: email:")
    assert "count: Field required" in message


@pytest.mark.node
async def test_invalid_payload_from_node(scenario: Scenario, harness: Harness) -> None:
    """Payload that fails validation, from a Node producer."""
    scenario.injected = "Node queue.add('StrictJob', {email: 5}, {attempts: 3})"
    await harness.good(0)
    ids = node_add(
        harness.prefix, [{"name": "StrictJob", "data": {"email": 5}, "opts": {"attempts": 3}}]
    )
    await harness.good(GOOD)
    [job] = await harness.finish(scenario, ids)
    scenario.explanation = (
        f"The job failed at once (attempt {job.attempt} of 3, no retry) with "
        f"`{reason(job)}`; it is recorded as failed."
    )
    assert job.attempt == 1
    assert reason(job).startswith("PayloadError: StrictJob: invalid payload: email:")


async def test_result_that_is_not_json(scenario: Scenario, harness: Harness) -> None:
    """Non-JSON return value."""
    scenario.injected = "handler returns a set"
    await harness.good(0)
    job_id = await harness.app.worker_service.queue_job(fault_app.SetResultJob, {})
    await harness.good(GOOD)
    [job] = await harness.finish(scenario, [job_id])
    scenario.explanation = f"The run failed with `{reason(job)}`, recorded as failed."
    assert reason(job).startswith("ResultError:")
    assert "not JSON" in reason(job)


@pytest.mark.node
async def test_unknown_backoff_type_from_node(scenario: Scenario, harness: Harness) -> None:
    """Unknown backoff.type from Node."""
    scenario.injected = "Node: FailJob with backoff {type: 'mybackoff'}, attempts 3"
    await harness.good(0)
    started = time.monotonic()
    opts = {"attempts": 3, "backoff": {"type": "mybackoff", "delay": 5}}
    ids = node_add(harness.prefix, [{"name": "FailJob", "data": {"n": -1}, "opts": opts}])
    await harness.good(GOOD)
    [job] = await harness.finish(scenario, ids)
    took = time.monotonic() - started
    scenario.figures(recovery=f"failed after {took:.1f} s")
    scenario.explanation = (
        "bullmq cannot compute the delay of an unknown backoff type and would leave the job "
        "active until the stalled check; bullworker's backoff hook fails it at once "
        f"(attempt {job.attempt}, `{reason(job)}`) and logs the type."
    )
    assert job.attempt == 1
    assert took < 10


@pytest.mark.node
async def test_unknown_job_name(scenario: Scenario, harness: Harness) -> None:
    """Unknown job name."""
    scenario.injected = "Node queue.add('NoSuchJob', ..., {attempts: 3})"
    await harness.good(0)
    ids = node_add(harness.prefix, [{"name": "NoSuchJob", "data": {}, "opts": {"attempts": 3}}])
    await harness.good(GOOD)
    [job] = await harness.finish(scenario, ids)
    scenario.explanation = f"Failed at once without retries: `{reason(job)}`."
    assert job.attempt == 1
    assert "unknown job 'NoSuchJob'" in reason(job) and "FaultJob" in reason(job)


async def test_oversized_payload(scenario: Scenario, harness: Harness) -> None:
    """Oversized payload (MAX_PAYLOAD_BYTES)."""
    scenario.injected = "a 5000-byte payload with MAX_PAYLOAD_BYTES=4096"
    scenario.settings = {"MAX_PAYLOAD_BYTES": 4096}
    await harness.good(0)
    with pytest.raises(PayloadError) as error:
        await harness.app.worker_service.queue_job(fault_app.FaultJob, {"pad": "x" * 5000})
    with pytest.raises(PayloadError):  # one oversized item refuses the whole batch
        await harness.app.worker_service.queue_jobs(
            fault_app.FaultJob, [{"n": 99}, {"pad": "x" * 5000}]
        )
    await harness.good(GOOD)
    await harness.finish(scenario, [])
    scenario.explanation = f"Refused before Redis: `{error.value}` (also for `queue_jobs`)."
    assert "over MAX_PAYLOAD_BYTES=4096" in str(error.value)
    assert 99 not in harness.exec_log.done()


async def test_handler_that_never_returns(scenario: Scenario, harness: Harness) -> None:
    """Handler that never returns (TIMEOUT = 1 s)."""
    scenario.injected = "await asyncio.Event().wait() in a job with TIMEOUT = 1"
    await harness.good(0)
    job_id = await harness.app.worker_service.queue_job(fault_app.NeverReturnsJob, {})
    await harness.good(GOOD)
    [job] = await harness.finish(scenario, [job_id])
    took = (job.completed_at - job.executed_at).total_seconds()
    scenario.figures(recovery=f"failed after {took:.1f} s")
    scenario.explanation = f"The run was cancelled after its TIMEOUT: `{reason(job)}`."
    assert reason(job) == "JobTimeout: NeverReturnsJob ran longer than its TIMEOUT of 1 s"


async def test_malformed_job_hashes(
    scenario: Scenario, harness: Harness, redis_client: Any
) -> None:
    """Malformed job hashes written into Redis by hand."""
    scenario.injected = "two job hashes with broken data/opts JSON pushed to the wait list"
    base = f"{harness.prefix}:default"
    await harness.good(0)
    await redis_client.hset(
        f"{base}:bad1", mapping={"name": "FaultJob", "data": "{nope", "opts": "{}"}
    )
    await redis_client.hset(
        f"{base}:bad2", mapping={"name": "FaultJob", "data": "{}", "opts": "[["}
    )
    await redis_client.lpush(f"{base}:wait", "bad1", "bad2")
    await redis_client.zadd(f"{base}:marker", {"0": 0})
    await harness.good(GOOD)
    bad = await harness.finish(scenario, ["bad1", "bad2"])
    reasons = [reason(job) for job in bad]
    scenario.explanation = (
        f"Both failed at once (`{reasons[0].split('(')[0].strip()}`, naming the job and the "
        "parse error) instead of sitting active until the stalled check; both are recorded."
    )
    for text, job_id in zip(reasons, ["bad1", "bad2"], strict=True):
        assert text.startswith(f"MalformedJobError: job {job_id} cannot be read")
