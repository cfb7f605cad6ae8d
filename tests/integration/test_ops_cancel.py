"""``bullworker jobs cancel`` of jobs that have not started, of finished and unknown jobs.

Running jobs, held by runners in other processes: test_runner_cancel.py.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from bullmq import Worker

from bullworker.core import keys
from bullworker.history.store import JobStore
from bullworker.ops.cancel import cancel_job
from tests.helpers import REDIS_URL, bull_queue, wait_finished
from tests.integration.cancel_app import CancelQuick
from tests.integration.cancel_support import QUEUE, bullworker, cancel, local_app


async def test_waiting_prioritized_and_delayed_jobs_are_recorded_then_removed(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore
) -> None:
    async with local_app(prefix, pg_dsn, pg_schema) as app:
        service = app.worker_service
        jobs = {
            "waiting": await service.queue_job(CancelQuick, {"n": 1}),
            "prioritized": await service.queue_job(CancelQuick, {"n": 2}, priority=5),
            "delayed": await service.queue_job(CancelQuick, {"n": 3}, delay=3_600_000),
        }
    async with bull_queue(QUEUE, prefix) as queue:
        for state, job_id in jobs.items():
            code, outcome, err = await cancel(env, job_id, "--reason", f"no {state} job")
            assert code == 0, err
            assert outcome == {
                "id": f"{QUEUE}:{job_id}",
                "queue": QUEUE,
                "jobId": job_id,
                "name": "CancelQuick",
                "state": state,
                "reason": f"JobCancelled: no {state} job",
                "action": "removed",
                "recorded": True,
                "listeners": None,
                "ended": None,
                "waitedSeconds": 0.0,
                "processedBy": None,
                "cancelled": True,
            }
            assert await queue.getJob(job_id) is None  # gone from Redis
        counts = await queue.getJobCounts("waiting", "prioritized", "delayed", "failed")
        assert set(counts.values()) == {0}

    # Recorded as cancelled, with the reason and no stack; never started.
    for state, job_id in jobs.items():
        [row] = await store.get(f"{QUEUE}:{job_id}")
        assert (row.status, row.attempt, row.name, row.executed_at) == (
            "cancelled", 0, "CancelQuick", None,
        )  # fmt: skip
        assert row.result == {"reason": f"JobCancelled: no {state} job", "stack": []}
        assert row.reason == f"JobCancelled: no {state} job"
    [delayed] = await store.get(f"{QUEUE}:{jobs['delayed']}")
    assert delayed.should_execute_at - delayed.created_at == timedelta(hours=1)

    # `jobs --status cancelled` lists them, `jobs show` shows one, the text output says so.
    listed = await bullworker(env, "jobs", "--status", "cancelled", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {d["id"] for d in json.loads(listed.stdout)} == {f"{QUEUE}:{j}" for j in jobs.values()}
    assert all(d["status"] == "cancelled" for d in json.loads(listed.stdout))
    table = await bullworker(env, "jobs", "--status", "cancelled")
    assert table.stdout.count(" cancelled ") == 3 and "JobCancelled: no waiting job" in table.stdout
    shown = await bullworker(env, "jobs", "show", f"{QUEUE}:{jobs['waiting']}")
    assert "status     cancelled" in shown.stdout
    assert "error      JobCancelled: no waiting job" in shown.stdout
    assert (await bullworker(env, "jobs", "--status", "done")).returncode == 1
    assert await store.count(status="cancelled") == 3
    counted = await bullworker(env, "prune", "--older-than", "1d", "--status", "cancelled",
                               "--dry-run")  # fmt: skip
    assert "would delete 0 cancelled row(s)" in counted.stdout, counted.stderr

    # Cancelled once: a second cancel is told so.
    again = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{jobs['waiting']}")
    assert again.returncode == 1
    assert f"error: {QUEUE}:{jobs['waiting']} already finished (cancelled)" in again.stderr


async def test_without_recording_the_job_is_only_removed(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore
) -> None:
    env = {**env, "RECORD_JOBS": "false"}
    async with local_app(prefix, pg_dsn, pg_schema, record_jobs=False) as app:
        job_id = await app.worker_service.queue_job(CancelQuick, {"n": 1}, delay=60_000)
        # The library call: data back, nothing printed.
        outcome = await cancel_job(app.config, QUEUE, job_id, "by the library")
    assert (outcome.action, outcome.recorded, outcome.cancelled) == ("removed", False, True)
    assert outcome.describe() == (
        f"{QUEUE}:{job_id} (CancelQuick) was delayed: removed from Redis "
        "(not recorded: RECORD_JOBS is false)"
    )
    assert await store.count() == 0
    async with bull_queue(QUEUE, prefix) as queue:
        assert await queue.getJob(job_id) is None
        other = await queue.add("CancelQuick", {"n": 2})
    text = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{other.id}")
    assert text.returncode == 0, text.stderr
    assert text.stdout == (
        f"{QUEUE}:{other.id} (CancelQuick) was waiting: removed from Redis "
        "(not recorded: RECORD_JOBS is false)\n"
    )
    assert await store.count() == 0


async def test_finished_unknown_and_scheduled_jobs_cannot_be_cancelled(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], redis_client: aioredis.Redis
) -> None:
    async with bull_queue(QUEUE, prefix) as queue:
        done = await queue.add("CancelQuick", {"n": 1})
        # Finished by a plain bullmq worker: nothing records it, it stays in Redis.
        worker = Worker(QUEUE, _quick, {"prefix": prefix, "connection": REDIS_URL})
        try:
            await wait_finished(queue, str(done.id))
        finally:
            await worker.close()

        finished = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{done.id}")
        assert finished.returncode == 1
        assert finished.stderr == f"error: {QUEUE}:{done.id} already finished (completed)\n"

        missing = await bullworker(env, "jobs", "cancel", f"{QUEUE}:404")
        assert (missing.returncode, missing.stderr) == (1, f"error: no job {QUEUE}:404 in Redis\n")
        nowhere = await bullworker(env, "jobs", "cancel", "nosuchqueue:1")
        assert nowhere.returncode == 1
        assert "error: no queue 'nosuchqueue' in Redis" in nowhere.stderr
        bad = await bullworker(env, "jobs", "cancel", ":1")
        assert bad.returncode == 1 and "must be <queue>:<jobId>" in bad.stderr

        # The next run of a job scheduler (a cron job) is not removed: the schedule would end.
        await queue.upsertJobScheduler("yearly", {"pattern": "0 0 1 1 *"}, "CancelQuick", {})
        [scheduled] = await queue.getJobs(["delayed"])
        refused = await bullworker(env, "jobs", "cancel", f"{QUEUE}:{scheduled.id}")
        assert refused.returncode == 1
        assert "is the next run of a job scheduler" in refused.stderr
        assert await queue.getJob(scheduled.id) is not None
    # No request was left behind for any of them.
    assert not await redis_client.exists(keys.cancel_requests_key(prefix, QUEUE))


async def _quick(job: Any, token: str | None = None) -> str:
    return "quick"
