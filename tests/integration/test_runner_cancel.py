"""Cancelling running jobs held by runners in other processes (``bullworker start``).

The request reaches the runner that holds the job, whichever process or host
it is (tests/integration/cancel_support.py starts them); a job that starts
after its request fails before its handler runs; Node can send the request.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.history.store import JobStore
from bullworker.ops.cancel import cancel_job
from bullworker.runtime.cancel import CancelRequest, send_cancel_request
from tests.helpers import bull_queue, eventually, redis_address, redis_url_at, wait_finished
from tests.integration.cancel_app import CancelQuick, CancelSlow, CancelSync
from tests.integration.cancel_support import (
    QUEUE,
    bullworker,
    cancel,
    local_app,
    marks,
    runner_process,
)
from tests.integration.test_node_interop import NodeScripts
from tests.proxy import TcpProxy

pytestmark = pytest.mark.timeout(90)


async def _recorded(store: JobStore, job_id: str) -> None:
    async def found() -> bool:
        return bool(await store.get(f"{QUEUE}:{job_id}"))

    await eventually(found, timeout=15)


async def test_a_running_async_job_in_another_process_stops_at_its_next_await(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore,
    tmp_path: Path, redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    trail = tmp_path / "slow.marks"
    async with (
        local_app(prefix, pg_dsn, pg_schema) as app,
        runner_process(env, tmp_path / "runner.log") as runner,
    ):
        job_id = await app.worker_service.queue_job(
            CancelSlow, {"marks": str(trail), "seconds": 60}
        )
        await eventually(lambda: marks(trail) == ["started attempt 1"])
        started = time.monotonic()
        code, outcome, err = await cancel(env, job_id, "--reason", "stop it")
        assert code == 0, err
        assert time.monotonic() - started < 10
        assert outcome["state"] == "active" and outcome["action"] == "requested"
        assert (outcome["listeners"], outcome["ended"], outcome["cancelled"]) == (
            1,
            "cancelled",
            True,
        )
        assert outcome["processedBy"] == f"{socket.gethostname()}:{runner.pid}"
        await eventually(lambda: marks(trail) == ["started attempt 1", "interrupted: stop it"])

        # Failed for good, not retried (attempts=3, one attempt made), recorded as cancelled.
        await _recorded(store, job_id)
        [row] = await store.get(f"{QUEUE}:{job_id}")
        assert (row.status, row.attempt, row.reason) == ("cancelled", 1, "JobCancelled: stop it")
        assert row.executed_at is not None
        await asyncio.sleep(1.0)
        assert marks(trail) == ["started attempt 1", "interrupted: stop it"]
        assert not await redis_client.exists(keys.cancel_requests_key(prefix, QUEUE))

        # A cancelled job cannot be cancelled again; a completed one neither.
        again = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{job_id}")
        assert again.returncode == 1
        assert f"{QUEUE}:{job_id} already finished (cancelled)" in again.stderr
        quick = await app.worker_service.queue_job(CancelQuick, {})
        await _recorded(store, quick)
        done = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{quick}")
        assert done.returncode == 1
        assert f"{QUEUE}:{quick} already finished (completed)" in done.stderr
        listed = await bullworker(env, "jobs", "--status", "cancelled")
        assert f"{QUEUE}:{job_id}" in listed.stdout and f"{QUEUE}:{quick}" not in listed.stdout


async def test_a_sync_handler_sees_cancelled_and_the_job_fails_in_redis(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "RECORD_JOBS": "false"}  # the failed job stays in Redis, as Node sees it
    trail = tmp_path / "sync.marks"
    async with (
        local_app(prefix, pg_dsn, pg_schema, record_jobs=False) as app,
        runner_process(env, tmp_path / "runner.log"),
        bull_queue(QUEUE, prefix) as queue,
    ):
        job_id = await app.worker_service.queue_job(
            CancelSync, {"marks": str(trail), "seconds": 60}
        )
        await eventually(lambda: marks(trail) == ["started attempt 1"])
        # The library: what the CLI prints, as data.
        outcome = await cancel_job(app.config, QUEUE, job_id, "enough", wait=10)
        assert (outcome.action, outcome.ended, outcome.recorded) == (
            "requested",
            "cancelled",
            False,
        )
        job = await wait_finished(queue, job_id)
        assert job.failedReason == "JobCancelled: enough"
        assert (job.attemptsMade, job.opts["attempts"]) == (1, 3)
        assert await queue.getJobState(job_id) == "failed"
        # The thread ran on until it looked, then stopped.
        await eventually(
            lambda: marks(trail) == ["started attempt 1", "saw cancelled: enough"], timeout=5
        )
        shown = await bullworker(env, "jobs", "show", f"{QUEUE}:{job_id}")
        assert "status     cancelled" in shown.stdout, shown.stderr


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


async def test_the_request_reaches_the_process_that_runs_the_job(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    trail = tmp_path / "slow.marks"
    log = tmp_path / "runner.log"
    async with (
        local_app(prefix, pg_dsn, pg_schema) as app,
        runner_process(env, log, "--processes", "2", processes=2) as supervisor,
    ):
        job_id = await app.worker_service.queue_job(
            CancelSlow, {"marks": str(trail), "seconds": 60}
        )
        await eventually(lambda: marks(trail) == ["started attempt 1"])
        outcome = await cancel_job(app.config, QUEUE, job_id, "two processes")
        assert outcome.listeners == 2  # both runners listen; one holds the job
        assert outcome.ended == "cancelled"
        assert outcome.processed_by is not None
        holder = int(outcome.processed_by.rsplit(":", 1)[1])
        assert holder in _children(supervisor.pid) and holder != os.getpid()
        await _recorded(store, job_id)
        [row] = await store.get(f"{QUEUE}:{job_id}")
        assert (row.status, row.attempt) == ("cancelled", 1)
        assert f"job CancelSlow id={job_id} queue={QUEUE}: cancel requested" in log.read_text()


async def test_a_job_that_starts_after_its_request_fails_before_its_handler_runs(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    """The request in Redis is found by a runner that starts (or reconnects) later."""
    env = {**env, "RECORD_JOBS": "false"}
    trail = tmp_path / "never.marks"
    async with (
        local_app(prefix, pg_dsn, pg_schema, record_jobs=False) as app,
        bull_queue(QUEUE, prefix) as queue,
    ):
        job_id = await app.worker_service.queue_job(
            CancelSlow, {"marks": str(trail), "seconds": 60}
        )
        job = await queue.getJob(job_id)
        # A request for an earlier job with the same id does not touch this one.
        reused = await queue.add("CancelQuick", {}, {"jobId": "reused"})
        for request in (
            CancelRequest(
                QUEUE, job_id, "before it started", job.timestamp, int(time.time() * 1000)
            ),
            CancelRequest(QUEUE, "reused", "an older job's", reused.timestamp - 1),
        ):
            assert await send_cancel_request(redis_client, prefix, request) == 0  # nobody listens
        async with runner_process(env, tmp_path / "runner.log"):
            cancelled = await wait_finished(queue, job_id)
            assert cancelled.failedReason == "JobCancelled: before it started"
            assert cancelled.attemptsMade == 1
            assert marks(trail) == []  # the handler never ran
            assert (await wait_finished(queue, "reused")).returnvalue == "quick"

            async def withdrawn() -> bool:
                key = keys.cancel_requests_key(prefix, QUEUE)
                return await redis_client.hkeys(key) == ["reused"]

            await eventually(withdrawn)  # the runner deleted the request it acted on


@pytest.mark.node
async def test_node_sends_the_cancel_request(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path,
    redis_url: str,
) -> None:  # fmt: skip
    """docs/node-interop.md's sender, as tests/node/cancel.mjs runs it."""
    env = {**env, "RECORD_JOBS": "false"}
    trail = tmp_path / "slow.marks"
    node = NodeScripts(prefix, redis_url)
    node.env["QUEUE"] = QUEUE
    async with (
        local_app(prefix, pg_dsn, pg_schema, record_jobs=False) as app,
        runner_process(env, tmp_path / "runner.log"),
        bull_queue(QUEUE, prefix) as queue,
    ):
        job_id = await app.worker_service.queue_job(
            CancelSlow, {"marks": str(trail), "seconds": 60}
        )
        await eventually(lambda: marks(trail) == ["started attempt 1"])
        sent = await node.run("cancel.mjs", {"id": job_id, "reason": "from node"})
        assert sent == {"listeners": 1}
        job = await wait_finished(queue, job_id)
        assert (job.failedReason, job.attemptsMade) == ("JobCancelled: from node", 1)


async def test_the_service_listens_again_after_a_redis_outage(
    prefix: str, pg_dsn: str, pg_schema: str, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    """A request made while the runner could not reach Redis is acted on once it can."""
    proxy = TcpProxy(*redis_address())
    await proxy.start()
    trail = tmp_path / "slow.marks"
    settings = {"redis_url": redis_url_at(proxy.port), "redis_timeout": 2.0, "record_jobs": False}
    async with local_app(prefix, pg_dsn, pg_schema, **settings) as app:
        runner = app.create_runner()
        await runner.start()
        try:
            job_id = await app.worker_service.queue_job(
                CancelSlow, {"marks": str(trail), "seconds": 60}
            )
            await eventually(lambda: marks(trail) == ["started attempt 1"])
            async with bull_queue(QUEUE, prefix) as queue:
                job = await queue.getJob(job_id)
                await proxy.cut()
                # Sent straight to Redis: the runner misses the message, not the hash.
                request = CancelRequest(QUEUE, job_id, "while away", job.timestamp)
                assert await send_cancel_request(redis_client, prefix, request) == 0
                await asyncio.sleep(1.5)
                assert marks(trail) == ["started attempt 1"]
                await proxy.restore()
                cancelled = await wait_finished(queue, job_id, timeout=20)
                assert cancelled.failedReason == "JobCancelled: while away"
                assert marks(trail) == ["started attempt 1", "interrupted: while away"]
            # Stopping the service does not hang on an unreachable server.
            await proxy.cut()
            started = time.monotonic()
            await runner.cancels.stop()
            assert time.monotonic() - started < 5
            await proxy.restore()
        finally:
            await runner.stop(grace=1)
            await proxy.cut()
