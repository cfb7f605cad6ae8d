"""The recorder: finished jobs become `_jobs` rows exactly once, then leave Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from bullworker import App, BaseJob, JobRegistry, create_app, worker_job
from bullworker.core import keys
from bullworker.core.keep import KeepWindow
from bullworker.history.backlog import recording_backlog
from bullworker.history.recorder import Recorder
from bullworker.history.script_calls import FetchJobs, RemoveIfUnchanged
from bullworker.history.store import JobStore, open_store
from bullworker.transport.connection import redis_client
from tests.helpers import (
    REDIS_URL,
    app_config,
    bull_queue,
    bullworker_env,
    eventually,
    pg_address,
    pg_dsn_at,
    wait_finished,
)
from tests.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
reg = JobRegistry()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@worker_job(registry=reg)
class EchoJob(BaseJob[dict[str, Any], dict[str, Any]]):
    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"echo": data}


@worker_job(registry=reg)
class BrokenJob(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "other"

    async def handle(self, data: dict[str, Any]) -> None:
        raise RuntimeError(f"broken {data.get('n')}")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str
) -> AsyncIterator[JobStore]:
    if request.param == "sqlite":
        job_store = open_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3"))
    else:
        job_store = open_store(pg_dsn, pg_schema=request.getfixturevalue("pg_schema"))
    await job_store.open()
    yield job_store
    await job_store.close()


def make_app(prefix: str, **settings: Any) -> App:
    config = app_config(bull_prefix=prefix, app_env="production", **settings)
    return create_app(config=config, enable_worker=True, registry=reg)


#: No keep window: a recorded job leaves Redis at once (the tests of what removal checks).
AT_ONCE = KeepWindow(0, 0, 0.0)


def make_recorder(
    prefix: str, queue: str, job_store: JobStore, keep: KeepWindow = AT_ONCE, **opts: Any
) -> Recorder:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)

    async def ready() -> JobStore:
        await job_store.open()
        return job_store

    return Recorder(
        queue=queue,
        prefix=prefix,
        redis=client,
        events_redis=lambda: redis_client(app_config().redis_settings()),
        store=ready,
        keep=keep,
        **opts,
    )


async def run_jobs(
    prefix: str, jobs: list[tuple[type[BaseJob[Any, Any]], Any, dict[str, Any]]]
) -> list[str]:
    """Run jobs to the end with recording off; return their ids."""
    app = make_app(prefix, record_jobs=False)
    runner = app.create_runner()
    await runner.start()
    try:
        ids = [await app.worker_service.queue_job(cls, data, **opts) for cls, data, opts in jobs]
        for (cls, _, _), job_id in zip(jobs, ids, strict=True):
            async with bull_queue(app.worker_service.queue_for(cls), prefix) as queue:
                await wait_finished(queue, job_id)
    finally:
        await runner.stop(grace=1)
        await app.stop()
    return ids


async def finished_in_redis(prefix: str, queue: str) -> int:
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sum(
            [await client.zcard(keys.queue_key(prefix, queue, s)) for s in keys.FINISHED_SETS]
        )
    finally:
        await client.aclose()


async def test_finished_jobs_become_rows_and_leave_redis(prefix: str, store: JobStore) -> None:
    traceparent = f"00-{TRACE}-00f067aa0ba902b7-01"
    data = {"text": "héllo 🎉", "nested": {"list": [1, 2.5, None, True]}}
    ok, bad = await run_jobs(
        prefix,
        [
            (EchoJob, data, {"traceparent": traceparent, "delay": 50}),
            (BrokenJob, {"n": 7}, {"attempts": 2, "backoff": 10}),
        ],
    )
    for queue in ("default", "other"):
        recorder = make_recorder(prefix, queue, store)
        assert await recorder.record_batch() == 1
        await recorder.redis.aclose()

    [done] = await store.get(f"default:{ok}")
    assert (done.name, done.status, done.data) == ("EchoJob", "completed", data)
    assert done.result == {"echo": data}
    assert done.trace_id == TRACE
    assert done.attempt == 1
    assert done.executed_at is not None and done.created_at <= done.executed_at <= done.completed_at
    assert (done.should_execute_at - done.created_at).total_seconds() == pytest.approx(0.05)

    [failed] = await store.get(f"other:{bad}")
    assert (failed.queue, failed.status, failed.attempt) == ("other", "failed", 2)
    assert failed.result["reason"] == "RuntimeError: broken 7"
    assert any("RuntimeError: broken 7" in line for line in failed.result["stack"])
    assert failed.trace_id is None

    assert await finished_in_redis(prefix, "default") == 0
    assert await finished_in_redis(prefix, "other") == 0
    async with bull_queue("default", prefix) as queue:
        assert await queue.getJob(ok) is None


async def test_a_backlog_larger_than_a_scan_is_recorded(prefix: str, tmp_path: Path) -> None:
    """A new leader scans the finished sets: a scan's candidates outnumber what Lua can unpack."""
    n = 2500  # more than a scan looks at (SCAN_STEP), each candidate 4 values
    app = make_app(prefix, record_jobs=False)
    runner = app.create_runner(concurrency=50)
    await app.worker_service.queue_jobs(EchoJob, [{"n": i} for i in range(n)])
    await runner.start()
    try:
        await eventually(lambda: _all_finished(prefix, n), timeout=60)
    finally:
        await runner.stop(grace=1)
        await app.stop()
    store = open_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3"))
    recorder = make_recorder(prefix, "default", store)
    try:
        recorded = 0
        while (written := await recorder.record_batch()) > 0:
            recorded += written
        assert recorded == n
        assert await store.count(queue="default") == n
        assert await finished_in_redis(prefix, "default") == 0
    finally:
        await recorder.redis.aclose()
        await store.close()


async def _all_finished(prefix: str, n: int) -> bool:
    return await finished_in_redis(prefix, "default") >= n


async def test_reused_job_id_gets_its_own_row(prefix: str, store: JobStore) -> None:
    recorder = make_recorder(prefix, "default", store)
    [first] = await run_jobs(prefix, [(EchoJob, {"v": 1}, {})])
    await recorder.record_batch()
    await recorder.redis.delete(keys.queue_key(prefix, "default", "id"))  # as after a flush
    await asyncio.sleep(0.01)  # a later createdAt
    [second] = await run_jobs(prefix, [(EchoJob, {"v": 2}, {})])
    assert first == second
    await recorder.record_batch()
    rows = await store.get(f"default:{first}")
    assert [r.data for r in rows] == [{"v": 2}, {"v": 1}]
    assert await finished_in_redis(prefix, "default") == 0
    await recorder.redis.aclose()


async def test_a_changed_job_is_never_removed(prefix: str, redis_client: aioredis.Redis) -> None:
    [job_id] = await run_jobs(prefix, [(EchoJob, {}, {})])
    job_key = keys.job_key(prefix, "default", job_id)
    finished_on = await redis_client.hget(job_key, "finishedOn")
    fetch = FetchJobs(redis_client)
    remove = RemoveIfUnchanged(redis_client)
    set_key = keys.queue_key(prefix, "default", "completed")
    dedup = keys.deduplication_key_prefix(prefix, "default")

    async def read_mark() -> str:
        reply = await fetch(keys=[set_key], args=[keys.job_key(prefix, "default", ""), 100, job_id])
        [[_, _, _, mark]] = json.loads(reply)
        return str(mark)

    def unless_changed(finished: str, attempts: str, mark: str) -> Any:
        return remove(keys=[set_key, job_key], args=[job_id, finished, attempts, mark, dedup, 100])

    mark = await read_mark()
    assert await unless_changed("1", "1", mark) == -1
    assert await unless_changed(finished_on, "9", mark) == -1
    await redis_client.rpush(keys.job_logs_key(prefix, "default", job_id), "logged after the read")
    assert await unless_changed(finished_on, "1", mark) == -1
    assert await redis_client.exists(job_key) == 1
    assert await unless_changed(finished_on, "1", await read_mark()) == 1
    assert await redis_client.exists(job_key) == 0


async def test_a_job_removed_by_someone_else_is_dropped_without_a_row(
    prefix: str, store: JobStore
) -> None:
    [job_id] = await run_jobs(prefix, [(EchoJob, {}, {})])
    recorder = make_recorder(prefix, "default", store)
    await recorder.redis.delete(keys.job_key(prefix, "default", job_id))
    assert await recorder.record_batch() == 1
    assert await store.get(f"default:{job_id}") == []
    assert await finished_in_redis(prefix, "default") == 0
    await recorder.redis.aclose()


async def test_runner_records_every_queue_live(prefix: str, pg_dsn: str, pg_schema: str) -> None:
    app = make_app(
        prefix, database_url=pg_dsn, database_schema=pg_schema, recorder_sweep_interval=1.0
    )
    async with app:
        pass  # production app: no runner by itself
    runner = app.create_runner()
    await runner.start()
    try:
        await app.worker_service.queue_jobs(EchoJob, [{"n": n} for n in range(30)])
        await app.worker_service.queue_jobs(BrokenJob, [{"n": n} for n in range(20)])
        store = open_store(pg_dsn, pg_schema=pg_schema)
        await store.open()
        try:
            await eventually(lambda: _count_is(store, 50), timeout=20)
            assert await store.count(queue="default", status="completed") == 30
            assert await store.count(queue="other", status="failed") == 20
        finally:
            await store.close()
        await eventually(lambda: _all_recorded(prefix, ["default", "other"]), timeout=10)
        # Kept in Redis within the keep window (1,000 completed, 5,000 failed, 1 h).
        assert await finished_in_redis(prefix, "default") == 30
        assert await finished_in_redis(prefix, "other") == 20
    finally:
        await runner.stop(grace=1)
        await app.stop()


async def _count_is(store: JobStore, n: int) -> bool:
    return await store.count() == n


async def _redis_empty(prefix: str, queues: list[str]) -> bool:
    return all([await finished_in_redis(prefix, q) == 0 for q in queues])


async def _all_recorded(prefix: str, queues: list[str]) -> bool:
    """No finished job in Redis waits to be recorded (those kept after recording may stay)."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return all([(await recording_backlog(client, prefix, q)).total == 0 for q in queues])
    finally:
        await client.aclose()


SECRET = "pw-never-shown-4711"


async def test_database_outage_loses_nothing(
    prefix: str, pg_dsn: str, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy(*pg_address())
    await proxy.start()
    # With a password (the test server trusts local users and never asks for it),
    # so that the check below could catch it leaking into errors.
    parts = urlsplit(pg_dsn_at(proxy.port))
    user = parts.username or "postgres"
    netloc = f"{user}:{SECRET}@{parts.hostname}:{parts.port}"
    via_proxy = urlunsplit(parts._replace(netloc=netloc))
    store = open_store(via_proxy, pg_schema=pg_schema, connect_timeout=1.0)
    direct = open_store(pg_dsn, pg_schema=pg_schema)
    await direct.open()
    recorder = make_recorder(prefix, "default", store, sweep_interval=0.5)
    await recorder.start()
    try:
        await run_jobs(prefix, [(EchoJob, {"n": 0}, {})])
        await eventually(lambda: _count_is(direct, 1), timeout=10)

        await proxy.cut()
        await run_jobs(prefix, [(EchoJob, {"n": n}, {}) for n in range(1, 21)])  # runner unaffected
        await asyncio.sleep(2.0)
        assert await direct.count() == 1
        assert await finished_in_redis(prefix, "default") == 20  # nothing removed early
        assert recorder.stats.last_error is not None
        assert "127.0.0.1" in recorder.stats.last_error  # the error names the server...
        assert SECRET not in recorder.stats.last_error  # ...but not its password
        assert SECRET not in caplog.text

        await proxy.restore()
        await eventually(lambda: _count_is(direct, 21), timeout=40)
        await eventually(lambda: _redis_empty(prefix, ["default"]), timeout=10)
        assert await recorder.lag() == 0.0
    finally:
        await recorder.stop()
        await recorder.redis.aclose()
        await store.close()
        await direct.close()
        await proxy.cut()


async def test_leader_killed_mid_stream_another_takes_over(
    prefix: str, pg_dsn: str, pg_schema: str
) -> None:
    env = bullworker_env(
        BULL_PREFIX=prefix,
        APP_ENV="production",
        DATABASE_URL=pg_dsn,
        DATABASE_SCHEMA=pg_schema,
        LEADER_TTL="2",
        RECORDER_SWEEP_INTERVAL="1",
        WORKER_LOCK_DURATION="2000",
        WORKER_STALLED_INTERVAL="1000",
        SHUTDOWN_GRACE="2",
    )
    cmd = [
        sys.executable,
        "-m",
        "bullworker",
        "start",
        "--app",
        "tests.integration.recorder_app:app",
    ]
    procs = [
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    ]
    info_key = keys.leader_info_key(prefix, "default")
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    store = open_store(pg_dsn, pg_schema=pg_schema)
    await store.open()
    try:
        await eventually(lambda: _has_leader(client, info_key), timeout=15)
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        leader_pid = int(await client.hget(info_key, "pid") or 0)
        assert leader_pid == procs[0].pid
        async with bull_queue("default", prefix) as queue:
            total = 0
            for batch in range(10):
                await queue.addBulk(
                    [{"name": "TickJob", "data": {"n": total + i}} for i in range(30)]
                )
                total += 30
                if batch == 4:
                    procs[0].send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
                await asyncio.sleep(0.2)
        await eventually(lambda: _leader_is(client, info_key, procs[1].pid), timeout=10)
        takeover = time.monotonic() - killed_at
        assert takeover < 2 + 2.5  # about one TTL, plus retry and start-up
        await eventually(lambda: _count_is(store, total), timeout=40)
        rows = await store.recent(limit=total + 10)
        assert len({r.id for r in rows}) == total == len(rows)
        assert sorted(r.data["n"] for r in rows) == list(range(total))
        await eventually(lambda: _all_recorded(prefix, ["default"]), timeout=10)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        await client.aclose()
        await store.close()


async def _has_leader(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.hget(key, "pid"))


async def _leader_is(client: aioredis.Redis, key: str, pid: int) -> bool:
    return await client.hget(key, "pid") == str(pid)


async def test_jobs_finishing_during_a_clean_stop_are_recorded_before_exit(
    prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.sqlite3"
    env = bullworker_env(
        BULL_PREFIX=prefix, APP_ENV="production", SQLITE_PATH=str(path), SHUTDOWN_GRACE="10",
        RECORDER_SWEEP_INTERVAL="30",  # no sweep helps: only the stop's last batch
    )  # fmt: skip
    cmd = [sys.executable, "-m", "bullworker", "start", "--app", "tests.integration.recorder_app:app"]  # fmt: skip
    log_path = tmp_path / "runner.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await eventually(lambda: _has_leader(client, keys.leader_info_key(prefix, "default")), 15)
        async with bull_queue("default", prefix) as queue:
            await queue.addBulk(
                [{"name": "SlowJob", "data": {"n": n, "seconds": 1.0}} for n in range(3)]
            )
            await eventually(lambda: _active_is(queue, 3), timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await client.aclose()
    log = log_path.read_text()
    async with open_store(None, sqlite_path=str(path)) as store:
        rows = await store.recent(limit=10)
    assert sorted(r.data["n"] for r in rows) == [0, 1, 2], log
    assert {r.status for r in rows} == {"completed"}  # recorded by this runner, before it exited


async def _active_is(queue: Any, n: int) -> bool:
    return int((await queue.getJobCounts("active"))["active"]) == n
