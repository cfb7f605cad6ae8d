"""The keep window: recorded jobs stay in Redis for a while, by count and by age, then go."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Job

from bullworker import open_store
from bullworker.core import keys
from bullworker.core.keep import KeepWindow
from bullworker.history.backlog import recording_backlog
from bullworker.history.store import JobStore
from tests.helpers import bull_queue, eventually, wait_finished
from tests.integration.test_recorder import (
    BrokenJob,
    EchoJob,
    finished_in_redis,
    make_app,
    make_recorder,
    run_jobs,
)
from tests.integration.test_recorder import store as store  # the fixture: SQLite and PostgreSQL


async def finished_ids(client: aioredis.Redis, prefix: str, queue: str, status: str) -> list[str]:
    """The ids of a finished set, oldest ``finishedOn`` first."""
    return [str(i) for i in await client.zrange(keys.queue_key(prefix, queue, status), 0, -1)]


async def test_the_newest_jobs_stay_by_count(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    ok = await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(5)])
    bad = await run_jobs(prefix, [(BrokenJob, {"n": n}, {}) for n in range(3)])
    newest_ok = (await finished_ids(redis_client, prefix, "default", "completed"))[-2:]
    newest_bad = (await finished_ids(redis_client, prefix, "other", "failed"))[-1:]
    window = KeepWindow(completed=2, failed=1, age=None)
    for queue in ("default", "other"):
        recorder = make_recorder(prefix, queue, store, keep=window)
        try:
            assert await recorder.record_batch() == (5 if queue == "default" else 3)
            assert await recorder.record_batch() == 0  # nothing new: no row written again
            assert recorder.stats.rows_written == (5 if queue == "default" else 3)
        finally:
            await recorder.redis.aclose()
    assert await store.count() == 8
    assert await finished_ids(redis_client, prefix, "default", "completed") == newest_ok
    assert await finished_ids(redis_client, prefix, "other", "failed") == newest_bad
    for queue in ("default", "other"):
        assert (await recording_backlog(redis_client, prefix, queue)).total == 0
    async with bull_queue("default", prefix) as queue:
        for job_id in ok:
            job = await queue.getJob(job_id)
            if job_id in newest_ok:  # still readable as BullMQ has it, and in _jobs
                assert job is not None and job.returnvalue == {"echo": job.data}
                assert await queue.getJobState(job_id) == "completed"
            else:
                assert job is None
            assert len(await store.get(f"default:{job_id}")) == 1
    assert [len(await store.get(f"other:{job_id}")) for job_id in bad] == [1, 1, 1]


async def test_recorded_jobs_leave_once_older_than_the_age(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(3)])
    recorder = make_recorder(prefix, "default", store, keep=KeepWindow(100, 100, 0.5))
    try:
        assert await recorder.record_batch() == 3
        assert await finished_in_redis(prefix, "default") == 3  # kept
        await asyncio.sleep(0.7)
        assert await recorder.record_batch() == 0  # nothing to record, but the trim
        assert await finished_in_redis(prefix, "default") == 0
        assert recorder.stats.jobs_removed == 3
    finally:
        await recorder.redis.aclose()
    assert await store.count(queue="default") == 3
    assert await redis_client.keys(f"{prefix}:default:[0-9]*") == []  # hashes and logs too


async def test_a_line_logged_on_a_kept_job_reaches_its_row_before_it_leaves(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    [job_id] = await run_jobs(prefix, [(EchoJob, {"n": 1}, {})])
    recorder = make_recorder(prefix, "default", store, keep=KeepWindow(100, 100, 0.5))
    try:
        assert await recorder.record_batch() == 1
        [row] = await store.get(f"default:{job_id}")
        assert row.logs is None
        await redis_client.rpush(keys.job_logs_key(prefix, "default", job_id), "logged later")
        await asyncio.sleep(0.7)
        for _ in range(5):  # the trim sees the change, a scan records the job again, then it goes
            await recorder.record_batch()
            if await finished_in_redis(prefix, "default") == 0:
                break
        assert await finished_in_redis(prefix, "default") == 0
    finally:
        await recorder.redis.aclose()
    [row] = await store.get(f"default:{job_id}")
    assert row.logs == ["logged later"]


@pytest.fixture(params=["sqlite", "postgres"])
def recorded_to(request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str) -> dict[str, Any]:
    """Settings of an app that records to SQLite or to PostgreSQL."""
    if request.param == "sqlite":
        return {"sqlite_path": str(tmp_path / "jobs.sqlite3")}
    return {"database_url": pg_dsn, "database_schema": request.getfixturevalue("pg_schema")}


async def test_a_failed_job_retried_in_the_window_is_recorded_again(
    prefix: str, recorded_to: dict[str, Any]
) -> None:
    app = make_app(prefix, recorder_sweep_interval=0.5, **recorded_to)
    runner = app.create_runner()
    await runner.start()
    store = open_store(
        recorded_to.get("database_url"),
        sqlite_path=recorded_to.get("sqlite_path", "unused.sqlite3"),
        pg_schema=recorded_to.get("database_schema"),
    )
    await store.open()
    job_ref = ""

    async def attempts() -> list[int]:
        return sorted(row.attempt for row in await store.get(job_ref))

    try:
        job_id = await app.worker_service.queue_job(BrokenJob, {"n": 1})
        job_ref = f"other:{job_id}"
        await eventually(lambda: _equals(attempts(), [1]))
        async with bull_queue("other", prefix) as queue:
            job = await queue.getJob(job_id)  # kept in Redis: bull-board's retry works
            assert job is not None and await queue.getJobState(job_id) == "failed"
            await job.retry("failed")
            await eventually(lambda: _equals(attempts(), [1, 2]))
            first = {row.attempt: row for row in await store.get(job_ref)}[1]
            # Retried with its attempts reset: the same key again, so that row is updated.
            job = await wait_finished(queue, job_id)
            await eventually(lambda: _recorded(app, "other"))
            await job.retry("failed", {"resetAttemptsMade": True})
            await eventually(lambda: _newer_first_attempt(store, job_ref, first.completed_at))
        rows = await store.get(job_ref)
        assert sorted(row.attempt for row in rows) == [1, 2]
        assert all(row.status == "failed" for row in rows)
    finally:
        await runner.stop(grace=1)
        await app.stop()
        await store.close()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _recorded(app: Any, queue: str) -> bool:
    client = aioredis.Redis.from_url(app.config.redis_url, decode_responses=True)
    try:
        return (await recording_backlog(client, app.config.bull_prefix, queue)).total == 0
    finally:
        await client.aclose()


async def _newer_first_attempt(store: JobStore, job_ref: str, before: Any) -> bool:
    rows = {row.attempt: row for row in await store.get(job_ref)}
    return 1 in rows and rows[1].completed_at > before


async def test_a_recorded_job_is_still_read_by_bullmq(prefix: str, tmp_path: Path) -> None:
    """`Job.fromId` after the job was recorded finds it, as BullMQ left it."""
    app = make_app(prefix, recorder_sweep_interval=0.5, sqlite_path=str(tmp_path / "j.sqlite3"))
    runner = app.create_runner()
    await runner.start()
    try:
        job_id = await app.worker_service.queue_job(EchoJob, {"n": 7})
        async with bull_queue("default", prefix) as queue:
            await wait_finished(queue, job_id)
            await eventually(lambda: _recorded(app, "default"))
            job = await Job.fromId(queue, job_id)
            assert job is not None and job.returnvalue == {"echo": {"n": 7}}
    finally:
        await runner.stop(grace=1)
        await app.stop()


async def test_a_scan_goes_on_where_the_last_batch_stopped(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(7)])
    recorder = make_recorder(prefix, "default", store, keep=KeepWindow(), batch_size=2)
    try:
        handled = [await recorder.record_batch()]
        while recorder.more:
            handled.append(await recorder.record_batch())
        assert handled == [2, 2, 2, 1]  # oldest first, each once
        assert recorder._reads.used == 3  # each next batch read while the last was written
        assert recorder.stats.rows_written == 7
        assert await recorder.record_batch() == 0
    finally:
        await recorder.redis.aclose()
    assert await store.count(queue="default") == 7
    assert (await recording_backlog(redis_client, prefix, "default")).total == 0
    assert await finished_in_redis(prefix, "default") == 7


async def test_a_backlog_of_events_is_read_ahead_each_job_once(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    recorder = make_recorder(prefix, "default", store, keep=KeepWindow(), batch_size=2)
    try:
        assert await recorder.record_batch() == 0  # the first batch scans: nothing yet
        assert not recorder.more
        await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(7)])
        handled = [await recorder.record_batch()]  # from the events, not a scan
        while recorder.more:
            handled.append(await recorder.record_batch())
        assert handled == [2, 2, 2, 1]
        assert recorder._reads.used == 3
        assert recorder.stats.rows_written == 7
    finally:
        await recorder.redis.aclose()
    assert await store.count(queue="default") == 7
    assert (await recording_backlog(redis_client, prefix, "default")).total == 0


async def test_a_failed_mark_while_behind_reads_its_jobs_again(
    prefix: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    # While behind, a batch's mark runs as the next batch is written; Redis failing it
    # fails the next batch, and the jobs it left unmarked are read again, none lost.
    recorder = make_recorder(prefix, "default", store, batch_size=2)  # keeps nothing
    mark, failures = recorder._mark, []

    async def failing_once(**call: Any) -> Any:
        if failures:
            raise failures.pop()
        return await mark(**call)

    recorder._mark = failing_once  # type: ignore[method-assign]
    try:
        assert await recorder.record_batch() == 0  # the first batch scans: nothing yet
        await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(7)])
        failures.append(ConnectionError("Redis went away"))
        assert await recorder.record_batch() == 2  # its mark starts, and fails
        with pytest.raises(ConnectionError, match="went away"):
            await recorder.record_batch()
        while await recorder.record_batch() or recorder.more:
            pass
    finally:
        await recorder.redis.aclose()
    assert await store.count(queue="default") == 7
    assert (await recording_backlog(redis_client, prefix, "default")).total == 0
    assert await finished_in_redis(prefix, "default") == 0


async def test_each_queue_gets_its_window_from_the_settings(prefix: str, tmp_path: Path) -> None:
    from bullworker.history.recording import RecordingService
    from tests.helpers import app_config

    config = app_config(
        bull_prefix=prefix, sqlite_path=str(tmp_path / "j.sqlite3"), keep_age="none",
        queue_keep="mail=5/6/7s,audit=0",
    )  # fmt: skip
    service = RecordingService(config, ["mail", "audit", "other"])
    await service.start()
    try:
        windows = {queue: recorder.keep for queue, recorder in service.recorders.items()}
    finally:
        await service.stop()
    assert windows == {
        "mail": KeepWindow(5, 6, 7.0),
        "audit": KeepWindow(0, 0, 0.0),
        "other": KeepWindow(1000, 5000, None),
    }
