"""A job's progress and last log lines go into its ``_jobs`` row; none is lost on the way.

Jobs are run by raw BullMQ workers (Python's, and Node's in tests/node/log_progress.mjs),
which call ``job.log`` and ``job.updateProgress`` as a Node or Python service would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Job, Worker

from bullworker.core import keys
from bullworker.history.recorder import Recorder
from bullworker.history.recording import RecordingService
from bullworker.history.store import JobStore
from bullworker.transport.connection import redis_client
from tests.helpers import REDIS_URL, app_config, bull_queue, eventually
from tests.integration.ops_support import row
from tests.integration.test_node_interop import QUEUE as NODE_QUEUE
from tests.integration.test_node_interop import NodeScripts
from tests.integration.test_recorder import AT_ONCE, finished_in_redis, make_recorder
from tests.integration.test_recorder import store as store  # the fixture: SQLite and PostgreSQL

QUEUE = "logged"


async def log_and_report(job: Job, token: str) -> Any:
    """A processor: ``data["lines"]`` log lines, then ``data["progress"]`` if given."""
    for n in range(job.data.get("lines", 0)):
        await job.log(f"line {n} of {job.id}")
    if "progress" in job.data:
        await job.updateProgress(job.data["progress"])
    if job.data.get("fail"):
        raise RuntimeError(f"refused {job.id}")
    return "done"


async def finished_or_gone(queue: Any, job_id: str) -> bool:
    """Whether a job has finished, or is gone already (recorded by a running recorder)."""
    job = await queue.getJob(job_id)
    return job is None or bool(job.finishedOn)


async def run_logged(prefix: str, jobs: list[dict[str, Any]], queue_name: str = QUEUE) -> list[str]:
    """Run jobs of ``data`` to the end with a raw Python bullmq Worker; return their ids."""
    async with bull_queue(queue_name, prefix) as queue:
        added = [await queue.add("Logged", data, {"attempts": 1}) for data in jobs]
        worker = Worker(queue_name, log_and_report, {"prefix": prefix, "connection": REDIS_URL})
        try:
            for job in added:
                await eventually(lambda job_id=job.id: finished_or_gone(queue, job_id))
        finally:
            await worker.close()
    return [job.id for job in added]


async def logs_in_redis(client: aioredis.Redis, prefix: str, job_id: str) -> list[str]:
    return list(await client.lrange(keys.job_logs_key(prefix, QUEUE, job_id), 0, -1))


async def test_progress_and_log_lines_are_recorded(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    progress = {"step": 2, "of": 2, "note": "héllo 🎉"}
    logged, failed, quiet = await run_logged(
        prefix,
        [{"lines": 3, "progress": 100}, {"lines": 2, "progress": progress, "fail": True}, {}],
    )
    recorder = make_recorder(prefix, QUEUE, store)
    try:
        assert await recorder.record_batch() == 3
    finally:
        await recorder.redis.aclose()
    [done] = await store.get(f"{QUEUE}:{logged}")
    assert (done.status, done.progress) == ("completed", 100)
    assert done.logs == [f"line {n} of {logged}" for n in range(3)]
    [bad] = await store.get(f"{QUEUE}:{failed}")
    assert (bad.status, bad.progress) == ("failed", progress)
    assert bad.logs == [f"line 0 of {failed}", f"line 1 of {failed}"]
    [plain] = await store.get(f"{QUEUE}:{quiet}")
    assert (plain.progress, plain.logs) == (None, None)  # never reported any
    assert await finished_in_redis(prefix, QUEUE) == 0
    assert await logs_in_redis(redis_client, prefix, logged) == []  # removed once recorded


async def test_a_row_keeps_the_last_jobs_log_lines(
    prefix: str, store: JobStore, tmp_path: Any
) -> None:
    # JOBS_LOG_LINES reaches the recorders a runner's recording service builds.
    config = app_config(
        bull_prefix=prefix, jobs_log_lines=3, recorder_sweep_interval=0.2,
        sqlite_path=str(tmp_path / "unused.sqlite3"), keep_completed=0, keep_failed=0,
    )  # fmt: skip
    service = RecordingService(config, [QUEUE], store=store)
    await service.start()
    try:
        assert service.recorders[QUEUE].log_lines == 3
        [long, short] = await run_logged(prefix, [{"lines": 7, "progress": 7}, {"lines": 2}])

        async def recorded() -> bool:
            return await store.count(queue=QUEUE) == 2

        await eventually(recorded, timeout=10)
    finally:
        await service.stop()
    [row_long] = await store.get(f"{QUEUE}:{long}")
    assert row_long.logs == [f"line {n} of {long}" for n in (4, 5, 6)]  # the last 3 of 7
    assert row_long.progress == 7
    [row_short] = await store.get(f"{QUEUE}:{short}")
    assert row_short.logs == [f"line 0 of {short}", f"line 1 of {short}"]

    # 0 keeps no line, and still the progress.
    [none_kept] = await run_logged(prefix, [{"lines": 2, "progress": {"p": 1}}])
    recorder = make_recorder(prefix, QUEUE, store, log_lines=0)
    try:
        assert await recorder.record_batch() == 1
    finally:
        await recorder.redis.aclose()
    [row_none] = await store.get(f"{QUEUE}:{none_kept}")
    assert (row_none.logs, row_none.progress) == (None, {"p": 1})
    assert await finished_in_redis(prefix, QUEUE) == 0


def recorder_with_hook(
    prefix: str, job_store: JobStore, before_insert: Callable[[], Awaitable[None]]
) -> Recorder:
    """A recorder that calls ``before_insert`` once, between its read of a batch and its insert."""
    hooks = [before_insert]

    async def ready() -> JobStore:
        if hooks:
            await hooks.pop()()
        await job_store.open()
        return job_store

    return Recorder(
        queue=QUEUE,
        prefix=prefix,
        redis=aioredis.Redis.from_url(REDIS_URL, decode_responses=True),
        events_redis=lambda: redis_client(app_config().redis_settings()),
        store=ready,
        log_lines=100,
        keep=AT_ONCE,
    )


@pytest.mark.parametrize("keep_logs", [0, 2], ids=["growing", "keepLogs-trimmed"])
async def test_a_line_logged_after_the_read_is_recorded_before_removal(
    prefix: str, store: JobStore, redis_client: aioredis.Redis, keep_logs: int
) -> None:
    # job.log on a finished job (from a `completed` handler, or another process)
    # lands between the recorder's read and its removal. With BullMQ's keepLogs the
    # list keeps its length while its lines change: the removal must see both.
    [job_id] = await run_logged(prefix, [{"lines": 2}])
    if keep_logs:
        async with bull_queue(QUEUE, prefix) as queue:
            assert await Job.addJobLog(queue, job_id, "line 2 (trims line 0)", keep_logs) == 2
    before = await logs_in_redis(redis_client, prefix, job_id)

    async def log_late() -> None:
        async with bull_queue(QUEUE, prefix) as queue:
            await Job.addJobLog(queue, job_id, "logged late", keep_logs)

    recorder = recorder_with_hook(prefix, store, log_late)
    try:
        assert await recorder.record_batch() == 1
        [first] = await store.get(f"{QUEUE}:{job_id}")
        assert first.logs == before  # what was read: the late line came after
        assert await finished_in_redis(prefix, QUEUE) == 1  # changed since the read: kept
        now = await logs_in_redis(redis_client, prefix, job_id)
        assert now[-1] == "logged late" and len(now) == len(before) + (0 if keep_logs else 1)

        assert await recorder.record_batch() == 1  # read again: the row gets the new line
        [again] = await store.get(f"{QUEUE}:{job_id}")
        assert again.logs == now
        assert await finished_in_redis(prefix, QUEUE) == 0
        assert await logs_in_redis(redis_client, prefix, job_id) == []
        assert (recorder.stats.rows_written, recorder.stats.jobs_removed) == (2, 1)
    finally:
        await recorder.redis.aclose()
    assert await store.count(queue=QUEUE) == 1


async def test_a_row_only_takes_newer_lines_of_its_own_job(store: JobStore) -> None:
    # What two recorders at once, or a batch written again, may send for one key.
    lines = ["a", "b", "c"]
    first = row("1", age=timedelta(minutes=1), progress=1, logs=lines)
    assert await store.insert_records([first]) == 1
    assert await store.insert_records([first]) == 0  # the same read again: a no-op
    # An earlier read (fewer lines) never undoes a later one.
    assert await store.insert_records([replace(first, progress=0, logs=lines[:2])]) == 0
    # A later read of the same job (same completedAt): its new progress and lines.
    later = replace(first, progress={"done": True}, logs=[*lines, "d"])
    assert await store.insert_records([later]) == 1
    # Another job with the same id, createdAt and attempt: its row is never touched.
    other = replace(
        later, completed_at=later.completed_at + timedelta(seconds=1), logs=list("vwxyz")
    )
    assert await store.insert_records([other, row("2", age=timedelta(0))]) == 1
    [kept] = await store.get("ops:1")
    assert (kept.progress, kept.logs) == ({"done": True}, [*lines, "d"])
    assert await store.count() == 2


@pytest.mark.node
@pytest.mark.timeout(30)
async def test_node_job_log_and_progress_are_recorded(prefix: str, store: JobStore) -> None:
    async with bull_queue(NODE_QUEUE, prefix) as queue:
        added = [await queue.add("NodeLogged", {"n": n}) for n in range(2)]
    result = await NodeScripts(prefix, REDIS_URL).run("log_progress.mjs", {"count": 2})
    assert sorted(j["id"] for j in result["jobs"]) == sorted(job.id for job in added)
    recorder = make_recorder(prefix, NODE_QUEUE, store)
    try:
        assert await recorder.record_batch() == 2
    finally:
        await recorder.redis.aclose()
    for seen in result["jobs"]:
        [recorded] = await store.get(f"{NODE_QUEUE}:{seen['id']}")
        assert recorded.status == "completed" and recorded.result == {"by": "node"}
        assert (
            recorded.logs == seen["logs"] == [f"node line {n} of {seen['id']}" for n in (1, 2, 3)]
        )
        assert recorded.progress == seen["progress"] == {"step": 3, "of": 3}
    assert await finished_in_redis(prefix, NODE_QUEUE) == 0
