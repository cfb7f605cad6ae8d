"""``bullworker queues``: list, pause, resume, promote, remove, clean, drain, obliterate.

Every command runs as a real process against the test Redis (and PostgreSQL for
``_jobs``), with text and ``--json`` output; finished jobs come from a runner that
does not record, so that the commands find them in Redis.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from bullmq import Worker

from bullworker.history.hashes import to_record
from bullworker.history.store import JobStore
from tests.helpers import REDIS_URL, bull_queue, eventually, wait_finished
from tests.integration import ops_app
from tests.integration.ops_support import APP, ROOT, make_app, running


async def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``bullworker ARGS --app ops_app`` with ``stdin`` as its input."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bullworker", *args, "--app", APP],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def ok(env: dict[str, str], *args: str, stdin: str = "") -> str:
    result = await cli(env, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def ok_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(await ok(env, *args, "--json"))


async def finish(
    prefix: str, pg_dsn: str, pg_schema: str, *jobs: tuple[type, dict[str, Any]]
) -> list[str]:
    """Run ``jobs`` with a runner that does not record them: they stay finished in Redis."""
    app = make_app(prefix, pg_dsn, pg_schema, record_jobs=False)
    ids = [str(await app.worker_service.queue_job(job, data)) for job, data in jobs]
    async with running(app), bull_queue("ops", prefix) as queue:
        for job_id in ids:
            await wait_finished(queue, job_id)
    return ids


@asynccontextmanager
async def held_job(prefix: str) -> AsyncIterator[str]:
    """A job of queue ``ops`` that a (raw bullmq) worker holds active until the block ends;
    the worker takes no other job."""
    release = asyncio.Event()

    async def hold(job: Any, token: str) -> str:
        await release.wait()
        return "released"

    async with bull_queue("ops", prefix) as queue:
        job = await queue.add("OpsEcho", {"n": "held"}, {"lifo": True})  # taken first
        worker = Worker("ops", hold, {"prefix": prefix, "connection": REDIS_URL})
        try:
            await eventually(lambda: _state(queue, job.id, "active"), timeout=10)
            yield str(job.id)
        finally:
            closing = asyncio.create_task(worker.close())  # it fetches nothing more
            await asyncio.sleep(0.1)
            release.set()
            await closing


async def _state(queue: Any, job_id: str, state: str) -> bool:
    return bool(await queue.getJobState(job_id) == state)


# --------------------------------------------------------------------------- list, pause


async def test_queues_lists_counts_and_pauses_for_every_worker(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], redis_client: aioredis.Redis
) -> None:
    producer = make_app(prefix, pg_dsn, pg_schema)
    await producer.worker_service.queue_job(ops_app.OpsEcho, {"n": 1})
    await producer.worker_service.queue_job(ops_app.OpsEcho, {"n": 2}, delay=600_000)
    await producer.worker_service.close()
    async with bull_queue("node-only", prefix) as other:  # a queue only Redis knows
        await other.add("NodeJob", {"x": 1}, {"priority": 3})

    header, *lines = (await ok(env, "queues")).splitlines()
    assert header.split() == [
        "QUEUE", "PAUSED", "WAITING", "PRIORITIZED", "ACTIVE", "DELAYED", "WAITING-CHILDREN",
        "COMPLETED", "FAILED",
    ]  # fmt: skip
    assert [line.split() for line in lines] == [
        ["node-only", "no", "0", "1", "0", "0", "0", "0", "0"],
        ["ops", "no", "1", "0", "0", "1", "0", "0", "0"],
    ]
    listed = {q["queue"]: q for q in await ok_json(env, "queues")}
    assert listed["node-only"]["app"] is False and listed["ops"]["app"] is True
    assert listed["ops"]["counts"] == {
        "waiting": 1, "prioritized": 0, "active": 0, "delayed": 1, "waiting-children": 0,
        "completed": 0, "failed": 0,
    }  # fmt: skip
    assert (listed["ops"]["paused"], listed["ops"]["total"]) == (False, 2)

    paused = await ok(env, "queues", "pause", "ops")
    assert paused == "queue ops paused: no worker (bullworker or Node) starts its jobs; 1 waiting"
    again = await ok_json(env, "queues", "pause", "ops")
    assert again == {"queue": "ops", "paused": True, "changed": False, "waiting": 1}
    async with bull_queue("ops", prefix) as queue:
        assert await queue.isPaused()  # BullMQ's own state, which Node workers read
    [stats] = json.loads(await ok(env, "stats", "--json"))
    assert stats["paused"] is True
    assert (await ok(env, "stats")).splitlines()[1].split()[:2] == ["ops", "yes"]
    assert {q["queue"]: q["paused"] for q in await ok_json(env, "queues")} == {
        "node-only": False, "ops": True,
    }  # fmt: skip

    resumed = await ok_json(env, "queues", "resume", "ops")
    assert resumed == {"queue": "ops", "paused": False, "changed": True, "waiting": 1}
    assert await ok(env, "queues", "resume", "ops") == "queue ops was not paused; 1 waiting"
    assert await ok(env, "queues", "pause", "node-only") == (
        "queue node-only paused: no worker (bullworker or Node) starts its jobs; 1 waiting"
    )


async def test_unknown_queues_and_jobs_are_errors_that_list_the_queues(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], redis_client: aioredis.Redis
) -> None:
    commands = [
        ["pause", "nope"], ["resume", "nope"], ["drain", "nope"], ["drain", "nope", "--delayed"],
        ["clean", "nope", "--state", "wait", "--older-than", "1h"], ["obliterate", "nope", "--yes"],
        ["promote", "nope:1"], ["remove", "nope:1"],
    ]  # fmt: skip
    for args in commands:
        for extra in ([], ["--json"]):
            result = await cli(env, "queues", *args, *extra)
            assert result.returncode == 1, (args, result.stderr)
            assert result.stdout == ""
            assert result.stderr.startswith("error: no queue 'nope': "), result.stderr
            assert result.stderr.rstrip().endswith("the queues are: ops"), result.stderr
    assert await redis_client.exists(f"{prefix}:nope:meta") == 0  # nothing was created

    for command in ("promote", "remove"):
        result = await cli(env, "queues", command, "ops:999")
        assert (result.returncode, result.stderr) == (1, "error: no job ops:999 in Redis\n")
    bad_id = await cli(env, "queues", "remove", "ops:")
    assert bad_id.returncode == 1 and "must be <queue>:<jobId>" in bad_id.stderr
    bad_state = await cli(env, "queues", "clean", "ops", "--state", "active", "--older-than", "1h")
    assert bad_state.returncode == 2 and "--state must be one of" in bad_state.stderr
    bad_age = await cli(env, "queues", "clean", "ops", "--state", "wait", "--older-than", "soon")
    assert bad_age.returncode == 2 and "--older-than" in bad_age.stderr

    # A job recorded and gone from Redis is named as such.
    [done] = await finish(prefix, pg_dsn, pg_schema, (ops_app.OpsEcho, {"n": 1}))
    await ok(env, "queues", "remove", f"ops:{done}")
    gone = await cli(env, "queues", "remove", f"ops:{done}")
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"error: ops:{done} is not in Redis: it finished (completed)")


# --------------------------------------------------------------------------- one job


async def test_promote_and_remove_jobs_that_did_not_run(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore
) -> None:
    service = make_app(prefix, pg_dsn, pg_schema).worker_service
    waiting = await service.queue_job(ops_app.OpsEcho, {"n": 1})
    first, second, third = [
        await service.queue_job(ops_app.OpsEcho, {"n": n}, delay=600_000) for n in (2, 3, 4)
    ]
    await service.close()

    assert await ok(env, "queues", "promote", f"ops:{first}") == (
        f"ops:{first} (OpsEcho) was delayed: promoted, it waits to start now"
    )
    promoted = await ok_json(env, "queues", "promote", f"ops:{second}")
    assert promoted == {
        "id": f"ops:{second}", "queue": "ops", "jobId": str(second), "name": "OpsEcho",
        "state": "delayed", "action": "promoted", "ran": False, "recorded": False,
    }  # fmt: skip
    async with bull_queue("ops", prefix) as queue:
        assert await queue.getJobState(str(first)) == "waiting"
        assert await queue.getJobState(str(second)) == "waiting"
    not_delayed = await cli(env, "queues", "promote", f"ops:{first}")
    assert not_delayed.returncode == 1
    assert not_delayed.stderr == (
        f"error: ops:{first} is waiting; only a delayed job can be promoted\n"
    )

    assert await ok(env, "queues", "remove", f"ops:{waiting}") == (
        f"ops:{waiting} (OpsEcho) was waiting: removed from Redis without running (no _jobs row)"
    )
    removed = await ok_json(env, "queues", "remove", f"ops:{third}")
    assert (removed["state"], removed["action"], removed["ran"], removed["recorded"]) == (
        "delayed", "removed", False, False,
    )  # fmt: skip
    async with bull_queue("ops", prefix) as queue:
        assert await queue.getJob(str(waiting)) is None
        assert await queue.getJob(str(third)) is None
    assert await store.get(f"ops:{waiting}") == []  # never ran: no row

    async with held_job(prefix) as active:
        running = await cli(env, "queues", "remove", f"ops:{active}")
        assert running.returncode == 1
        assert running.stderr == (
            f"error: ops:{active} is running; BullMQ does not remove a running job: "
            f"`bullworker jobs cancel ops:{active}` stops it\n"
        )


async def test_removing_a_finished_job_records_it_first_or_says_it_did_not(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    recorded, unrecorded, clashing = await finish(
        prefix, pg_dsn, pg_schema, *((ops_app.OpsEcho, {"n": n}) for n in (1, 2, 3))
    )
    assert await ok(env, "queues", "remove", f"ops:{recorded}") == (
        f"ops:{recorded} (OpsEcho) completed: recorded in _jobs, then removed from Redis"
    )
    [row] = await store.get(f"ops:{recorded}")
    assert (row.status, row.data, row.result) == ("completed", {"n": 1}, {"echo": {"n": 1}})

    without = {**env, "RECORD_JOBS": "false"}
    outcome = await ok_json(without, "queues", "remove", f"ops:{unrecorded}")
    assert (outcome["state"], outcome["ran"], outcome["recorded"]) == ("completed", True, False)
    assert await store.get(f"ops:{unrecorded}") == []
    async with bull_queue("ops", prefix) as queue:
        assert await queue.getJob(recorded) is None
        assert await queue.getJob(unrecorded) is None

    # _jobs has another run's row under this one's key: the job stays in Redis, and it says so.
    record = to_record(
        "ops", clashing, "completed", await redis_client.hgetall(f"{prefix}:ops:{clashing}")
    )
    await store.insert_records(
        [replace(record, completed_at=record.completed_at - timedelta(seconds=5))]
    )
    clash = await cli(env, "queues", "remove", f"ops:{clashing}")
    assert clash.returncode == 1
    assert clash.stderr.startswith(f"error: ops:{clashing} was left in Redis: "), clash.stderr
    async with bull_queue("ops", prefix) as queue:
        assert await queue.getJobState(clashing) == "completed"


# --------------------------------------------------------------------------- clean, drain


async def test_clean_records_finished_jobs_first_or_reports_them_unrecorded(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore, tmp_path: Path
) -> None:
    missing = {"flag": str(tmp_path / "missing")}
    *done, failed = await finish(
        prefix, pg_dsn, pg_schema,
        *((ops_app.OpsEcho, {"n": n}) for n in range(3)), (ops_app.OpsFlaky, missing),
    )  # fmt: skip
    young = await ok_json(
        env, "queues", "clean", "ops", "--state", "completed", "--older-than", "1h"
    )
    assert (young["removed"], young["recorded"], young["recording"]) == (0, 0, True)
    await asyncio.sleep(1.1)

    one = await ok_json(
        env, "queues", "clean", "ops", "--state", "completed", "--older-than", "1s", "--limit", "1"
    )
    assert {k: one[k] for k in ("state", "limit", "removed", "ran", "recording", "recorded")} == {
        "state": "completed", "limit": 1, "removed": 1, "ran": True, "recording": True,
        "recorded": 1,
    }  # fmt: skip
    assert (one["unrecorded"], one["kept"]) == (0, 0)
    rest = await ok(env, "queues", "clean", "ops", "--state", "completed", "--older-than", "1s")
    assert rest.startswith("removed 2 completed job(s) of queue ops finished before ")
    assert rest.endswith(", each recorded in _jobs first")
    for job_id in done:
        [row] = await store.get(f"ops:{job_id}")
        assert row.status == "completed"

    # Not recorded (RECORD_JOBS=false): removed all the same, and the outcome says so.
    without = {**env, "RECORD_JOBS": "false"}
    text = await ok(without, "queues", "clean", "ops", "--state", "failed", "--older-than", "1s")
    assert text.endswith("; 1 of them NOT recorded in _jobs (the queue is not recorded)")
    assert await store.get(f"ops:{failed}") == []
    async with bull_queue("ops", prefix) as queue:
        assert await queue.getJobCounts("completed", "failed") == {"completed": 0, "failed": 0}


async def test_clean_and_drain_unstarted_jobs_keep_job_schedulers(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str]
) -> None:
    async with bull_queue("ops", prefix) as queue:
        for n in range(2):
            await queue.add("OpsEcho", {"n": n})
        await queue.add("OpsEcho", {"n": "urgent"}, {"priority": 1})
        for n in range(2):
            await queue.add("OpsEcho", {"n": n}, {"delay": 600_000})
        await queue.upsertJobScheduler("keep", {"pattern": "0 0 1 1 *"}, "OpsEcho", {})
        await asyncio.sleep(1.1)

        waiting = await ok(env, "queues", "clean", "ops", "--state", "wait", "--older-than", "1s")
        assert waiting.startswith("removed 3 wait job(s) of queue ops created before ")
        assert waiting.endswith(", without running them (no _jobs rows)")
        delayed = await ok_json(
            env, "queues", "clean", "ops", "--state", "delayed", "--older-than", "1s"
        )
        assert (delayed["removed"], delayed["ran"], delayed["recorded"]) == (2, False, 0)
        assert await queue.getJobCounts("waiting", "prioritized", "delayed") == {
            "waiting": 0, "prioritized": 0, "delayed": 1,  # the scheduler's next run
        }  # fmt: skip

        for n in range(2):
            await queue.add("OpsEcho", {"n": n})
        await queue.add("OpsEcho", {"n": "later"}, {"delay": 600_000})
        drained = await ok_json(env, "queues", "drain", "ops")
        assert drained == {
            "queue": "ops", "delayed": False, "removed": {"waiting": 2, "prioritized": 0},
            "left": {"waiting": 0, "prioritized": 0, "delayed": 2}, "ran": False, "recorded": 0,
        }  # fmt: skip
        text = await ok(env, "queues", "drain", "ops", "--delayed")
        assert text == (
            "drained queue ops: removed 1 delayed job(s) without running them (no _jobs rows); "
            "1 delayed job(s) left (job schedulers' next runs)"
        )
        assert [s["key"] for s in await queue.getJobSchedulers()] == ["keep"]


# --------------------------------------------------------------------------- obliterate


async def test_obliterate_asks_refuses_while_jobs_run_and_records_first(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], store: JobStore,
    redis_client: aioredis.Redis,
) -> None:  # fmt: skip
    [finished] = await finish(prefix, pg_dsn, pg_schema, (ops_app.OpsEcho, {"n": 1}))
    async with bull_queue("ops", prefix) as queue:
        await queue.add("OpsEcho", {"n": 2})
        await queue.add("OpsEcho", {"n": 3}, {"delay": 600_000})
        await queue.upsertJobScheduler("keep", {"pattern": "0 0 1 1 *"}, "OpsEcho", {})
        schedulers = await queue.getJobSchedulersCount()  # and the cron of the app's runner
        before = await queue.getJobCounts()
        delayed = before["delayed"]
        assert (before["waiting"], delayed, before["completed"]) == (1, 1 + schedulers, 1)

        for answer in ("", "n\n"):  # no answer (not a terminal), or no
            refused = await cli(env, "queues", "obliterate", "ops", stdin=answer)
            assert refused.returncode == 1
            assert refused.stderr.startswith(
                f"Obliterate queue ops (1 waiting, {delayed} delayed, 1 completed): delete it "
                "from Redis for good? [y/N]:"
            ), refused.stderr
            assert refused.stderr.rstrip().endswith("Aborted!")
            assert await queue.getJobCounts() == before
            assert not await queue.isPaused()

        async with held_job(prefix) as active:
            busy = await cli(env, "queues", "obliterate", "ops", "--yes")
            assert busy.returncode == 1
            assert busy.stderr.startswith("error: queue ops has 1 running job(s); obliterate ")
            assert "Obliterate" not in busy.stderr  # refused before asking
            assert not await queue.isPaused()  # untouched: not left paused
            assert (await queue.getJobCounts())["waiting"] == 1
            assert await queue.getJobState(active) == "active"

        done = await ok(env, "queues", "obliterate", "ops", stdin="y\n")
        assert done == (
            "obliterated queue ops: 2 finished job(s) recorded in _jobs and removed, then: "
            f"removed 1 waiting, {delayed} delayed job(s) and {schedulers} job scheduler(s); "
            f"{1 + delayed} never ran (no _jobs rows)"
        )
        [row] = await store.get(f"ops:{finished}")
        assert row.status == "completed"
        assert [key async for key in redis_client.scan_iter(match=f"{prefix}:ops:*")] == []
        assert not await queue.isPaused()


async def test_obliterate_with_force_removes_running_jobs_and_says_so(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str]
) -> None:
    async with held_job(prefix) as active:
        without = {**env, "RECORD_JOBS": "false"}
        outcome = await ok_json(without, "queues", "obliterate", "ops", "--yes", "--force")
        assert outcome == {
            "queue": "ops", "removed": {"active": 1}, "schedulers": 0, "recording": False,
            "recorded": 0, "unrecorded": 0, "running": 1, "paused": False,
        }  # fmt: skip
        async with bull_queue("ops", prefix) as queue:
            assert await queue.getJob(active) is None
