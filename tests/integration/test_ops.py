"""Operations commands as an operator runs them: real processes, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql

from bullworker import App, AppConfig, create_app, keys
from bullworker.durations import DurationError, parse_duration, parse_since
from bullworker.errors import PayloadError
from bullworker.queueing import check_options
from bullworker.recording import RecordingService
from bullworker.store import JobRecord, JobStore, open_store
from bullworker.store import schema as q
from tests.helpers import bull_queue, eventually, wait_finished
from tests.integration import ops_app

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.ops_app:app"
NOW = datetime.now(UTC)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    name = f"bwtest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def store(pg_dsn: str, pg_schema: str) -> AsyncIterator[JobStore]:
    job_store = open_store(pg_dsn, pg_schema=pg_schema)
    await job_store.open()
    yield job_store
    await job_store.close()


@pytest.fixture
def env(prefix: str, pg_dsn: str, pg_schema: str) -> dict[str, str]:
    """The environment of every ``bullworker`` process of a test."""
    base = {k: v for k, v in os.environ.items() if k != "BULLWORKER_APP"}
    base.update(
        BULL_PREFIX=prefix,
        DATABASE_URL=pg_dsn,
        DATABASE_SCHEMA=pg_schema,
        APP_ENV="production",
        PYTHONUNBUFFERED="1",
    )
    return base


async def bullworker(
    env: dict[str, str], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python -m bullworker ARGS --app ops_app``, in a thread so in-process runners go on."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def ok_json(env: dict[str, str], *args: str) -> Any:
    result = await bullworker(env, *args, "--app", APP, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_app(prefix: str, pg_dsn: str, pg_schema: str, **settings: Any) -> App:
    config = AppConfig(
        environ={},
        bull_prefix=prefix,
        app_env="production",
        database_url=pg_dsn,
        database_schema=pg_schema,
        **settings,
    )
    return create_app(config=config, enable_worker=True, registry=ops_app.registry)


@asynccontextmanager
async def running(app: App) -> AsyncIterator[App]:
    runner = app.create_runner()
    await runner.start()
    try:
        yield app
    finally:
        await runner.stop(grace=1)
        await app.stop()


def row(queue_id: str, *, age: timedelta, **fields: Any) -> JobRecord:
    """A `_jobs` row that finished ``age`` ago."""
    done = NOW - age
    values: dict[str, Any] = {
        "queue": "ops",
        "queue_id": queue_id,
        "attempt": 1,
        "name": "OpsEcho",
        "data": {"n": queue_id},
        "status": "completed",
        "result": {"echo": {"n": queue_id}},
        "created_at": done - timedelta(seconds=2),
        "should_execute_at": done - timedelta(seconds=2),
        "executed_at": done - timedelta(seconds=1),
        "completed_at": done,
    }
    values.update(fields)
    return JobRecord(**values)


def failed_row(queue_id: str, *, age: timedelta = timedelta(minutes=5), **fields: Any) -> JobRecord:
    reason = f"RuntimeError: broken {queue_id}"
    return row(
        queue_id,
        age=age,
        status="failed",
        result={"reason": reason, "stack": ["Traceback ...", reason]},
        **fields,
    )


# --------------------------------------------------------------------------- stats


async def test_stats_counts_leader_and_lag(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    producer = make_app(prefix, pg_dsn, pg_schema)
    service = producer.worker_service
    await service.queue_job(ops_app.OpsEcho, {"n": 1})
    await service.queue_job(ops_app.OpsEcho, {"n": 2}, delay=600_000)
    flaky = await service.queue_job(ops_app.OpsFlaky, {"flag": str(tmp_path / "missing")})
    await service.close()

    human = await bullworker(env, "stats", "--app", APP)
    assert human.returncode == 0, human.stderr
    header, line = human.stdout.splitlines()
    assert header.split() == [
        "QUEUE", "WAITING", "ACTIVE", "DELAYED", "FAILED", "COMPLETED", "LAG", "LEADER"
    ]  # fmt: skip
    assert line.split() == ["ops", "2", "0", "1", "0", "0", "0.0s", "none"]
    [stats] = await ok_json(env, "stats")
    assert stats["leader"] is None
    assert (stats["waiting"], stats["delayed"], stats["completed"]) == (2, 1, 0)

    # Finished but not recorded: they wait in Redis, and the lag grows.
    without_recording = make_app(prefix, pg_dsn, pg_schema, record_jobs=False)
    async with running(without_recording), bull_queue("ops", prefix) as queue:
        await wait_finished(queue, flaky)
    await asyncio.sleep(0.2)
    [stats] = await ok_json(env, "stats")
    assert (stats["waiting"], stats["completed"], stats["failed"]) == (0, 1, 1)
    assert stats["lag_seconds"] >= 0.2

    # A recording runner leads the queue and empties the finished sets.
    async with running(make_app(prefix, pg_dsn, pg_schema)):

        async def recorded() -> bool:
            [s] = await ok_json(env, "stats")
            return s["leader"] is not None and s["completed"] + s["failed"] == 0

        await eventually(recorded, timeout=20)
        [stats] = await ok_json(env, "stats")
        assert stats["leader"]["pid"] == os.getpid()
        assert stats["leader"]["host"] == socket.gethostname()
        assert stats["leader"]["since"].endswith("Z")
        assert stats["lag_seconds"] == 0
        human = await bullworker(env, "stats", "--app", APP)
        assert f"{socket.gethostname()} pid {os.getpid()} since " in human.stdout


# --------------------------------------------------------------------------- jobs + retry


async def test_what_failed_in_the_last_hour_and_retry_it(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path, store: JobStore
) -> None:
    flag = tmp_path / "fixed"
    app = make_app(prefix, pg_dsn, pg_schema)
    async with running(app):
        done = await app.worker_service.queue_job(ops_app.OpsEcho, {"n": 1})
        bad = await app.worker_service.queue_job(ops_app.OpsFlaky, {"flag": str(flag)})
        old_id = f"ops:{bad}"

        async def both_recorded() -> bool:
            return len(await store.recent(queue="ops")) == 2

        await eventually(both_recorded, timeout=20)

        # What failed in the last hour, and why?
        result = await bullworker(env, "jobs", "--status", "failed", "--since", "1h", "--app", APP)
        assert result.returncode == 0, result.stderr
        header, line = result.stdout.splitlines()
        assert header.split()[:4] == ["ID", "NAME", "STATUS", "ATTEMPT"]
        assert line.startswith(f"{old_id}  OpsFlaky  failed  1")
        assert line.endswith("RuntimeError: flag fixed is missing")
        listed = await ok_json(env, "jobs", "--status", "failed", "--since", "1h")
        assert [j["id"] for j in listed] == [old_id]
        assert listed[0]["error"]["reason"] == "RuntimeError: flag fixed is missing"
        everything = await ok_json(env, "jobs", "--queue", "ops", "--limit", "10")
        assert {j["id"] for j in everything} == {old_id, f"ops:{done}"}
        assert await ok_json(env, "jobs", "--name", "Nope") == []

        shown = await bullworker(env, "jobs", "show", old_id, "--app", APP)
        assert shown.returncode == 0, shown.stderr
        fields = dict(line.split(None, 1) for line in shown.stdout.split("stack:")[0].splitlines())
        assert fields["status"] == "failed"
        assert fields["error"] == "RuntimeError: flag fixed is missing"
        assert json.loads(fields["data"]) == {"flag": str(flag)}
        assert "Traceback" in shown.stdout.split("stack:")[1]
        for label in ("created", "scheduled", "started", "finished", "duration", "wait"):
            assert fields[label] != "-", label
        [detail] = await ok_json(env, "jobs", "show", old_id)
        assert detail["timings"]["duration_ms"] >= 0
        assert detail["timings"]["wait_ms"] >= 0
        assert detail["retryOf"] is None

        # Fix the cause, then retry it: a new job, same name and data, marked as a retry.
        flag.touch()
        result = await bullworker(env, "retry", "--id", old_id, "--app", APP)
        assert result.returncode == 0, result.stderr
        new_id = result.stdout.splitlines()[-1].split()[-1]
        assert new_id.startswith("retry-") and new_id not in (bad, done)

        async def retried() -> bool:
            return bool(await store.get(f"ops:{new_id}"))

        await eventually(retried, timeout=20)
        # Once is enough: the retry is recorded (and gone from Redis); nothing is queued again.
        twice = await ok_json(env, "retry", "--id", old_id)
        assert [(t["newId"], t["retriedAs"]) for t in twice] == [(None, new_id)]
        shown = await bullworker(env, "retry", "--id", old_id, "--dry-run", "--app", APP)
        assert shown.stdout.splitlines()[-1].endswith(f"retried before as {new_id}")
        # --again queues one more, with an id of its own.
        [further] = await ok_json(env, "retry", "--id", old_id, "--again")
        assert further["newId"] not in (None, new_id) and further["retriedAs"] is None

        async def retried_again() -> bool:
            return bool(await store.get(f"ops:{further['newId']}"))

        await eventually(retried_again, timeout=20)
    [again] = await store.get(f"ops:{new_id}")
    assert (again.name, again.status, again.result) == ("OpsFlaky", "completed", "fixed")
    assert again.data == {"flag": str(flag)}
    assert again.retry_of == old_id
    assert [r.queue_id for r in await store.retries_of(old_id)] == [further["newId"], new_id]
    [detail] = await ok_json(env, "jobs", "show", f"ops:{new_id}")
    assert detail["retryOf"] == old_id
    shown = await bullworker(env, "jobs", "show", f"ops:{new_id}", "--app", APP)
    assert f"retry of   {old_id}" in shown.stdout


async def test_jobs_show_finds_jobs_not_recorded_yet(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    producer = make_app(prefix, pg_dsn, pg_schema)
    service = producer.worker_service
    later = await service.queue_job(ops_app.OpsEcho, {"n": "later"}, delay=600_000)
    done = await service.queue_job(ops_app.OpsEcho, {"n": "done"})
    flag = str(tmp_path / "missing")
    flaky = await service.queue_job(
        ops_app.OpsFlaky, {"flag": flag}, attempts=2, backoff={"type": "fixed", "delay": 600_000}
    )
    await service.close()

    [waiting] = await ok_json(env, "jobs", "show", f"ops:{later}")
    assert (waiting["status"], waiting["source"]) == ("delayed", "redis")
    assert waiting["data"] == {"n": "later"} and "result" not in waiting
    timings = waiting["timings"]
    assert (timings["started"], timings["finished"], timings["recorded"]) == (None, None, None)
    created = datetime.fromisoformat(timings["created"])
    assert datetime.fromisoformat(timings["scheduled"]) - created == timedelta(minutes=10)

    # Run without recording: finished jobs stay in Redis, the flaky one waits for attempt 2.
    async with running(make_app(prefix, pg_dsn, pg_schema, record_jobs=False)), bull_queue("ops", prefix) as queue:  # fmt: skip
        await wait_finished(queue, done)

        async def first_attempt_failed() -> bool:
            return await queue.getJobState(flaky) == "delayed"

        await eventually(first_attempt_failed)
    [finished] = await ok_json(env, "jobs", "show", f"ops:{done}")
    assert (finished["status"], finished["source"]) == ("completed", "redis")
    assert finished["result"] == {"echo": {"n": "done"}}
    assert finished["timings"]["finished"] is not None
    shown = await bullworker(env, "jobs", "show", f"ops:{flaky}", "--app", APP)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.split("stack:")[0].splitlines()
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines)
    assert fields["status"] == "delayed"
    assert fields["source"] == "redis (not recorded yet)"
    assert fields["attempt"] == "1"
    assert fields["last error"] == "RuntimeError: flag missing is missing"
    assert "result" not in fields

    # Once recorded, the row is what `jobs show` finds.
    store = open_store(pg_dsn, pg_schema=pg_schema)
    async with running(make_app(prefix, pg_dsn, pg_schema)), store:

        async def recorded() -> bool:
            return bool(await store.get(f"ops:{done}"))

        await eventually(recorded, timeout=20)
    [row_detail] = await ok_json(env, "jobs", "show", f"ops:{done}")
    assert (row_detail["status"], row_detail["source"]) == ("completed", "_jobs")
    assert row_detail["timings"]["recorded"] is not None


async def test_retry_by_filters_and_dry_run(
    prefix: str, env: dict[str, str], store: JobStore
) -> None:
    # Jobs a Node service ran: names this app does not register are retried as they are.
    await store.insert_records(
        [
            failed_row("n1", queue="ops-node", name="NodeOnlyJob"),
            failed_row("n2", queue="ops-node", name="NodeOnlyJob"),
            failed_row("n3", queue="ops-node", name="OtherNodeJob"),
            row("n4", age=timedelta(minutes=1), queue="ops-node", name="NodeOnlyJob"),
            failed_row("old", queue="ops-node", name="NodeOnlyJob", age=timedelta(days=2)),
        ]
    )
    dry = await bullworker(
        env, "retry", "--queue", "ops-node", "--since", "1h", "--dry-run", "--app", APP
    )
    assert dry.returncode == 0, dry.stderr
    assert "WOULD RETRY" in dry.stdout.splitlines()[0]
    assert sorted(line.split()[0] for line in dry.stdout.splitlines()[1:]) == [
        "ops-node:n1", "ops-node:n2", "ops-node:n3"
    ]  # fmt: skip
    planned = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d", "--dry-run")  # fmt: skip
    assert sorted(p["id"] for p in planned) == ["ops-node:n1", "ops-node:n2"]
    assert all(p["newId"] is None for p in planned)
    async with bull_queue("ops-node", prefix) as queue:
        assert (await queue.getJobCounts("waiting"))["waiting"] == 0

    done = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d")  # fmt: skip
    assert sorted(d["id"] for d in done) == ["ops-node:n1", "ops-node:n2"]
    async with bull_queue("ops-node", prefix) as queue:
        for item in done:
            job = await queue.getJob(item["newId"])
            assert job.name == "NodeOnlyJob"
            assert job.data == {"n": item["id"].split(":")[1]}
            assert job.opts["retryOf"] == item["id"]

    # Retried already and still in Redis: the same ids, nothing queued twice.
    repeated = await ok_json(env, "retry", "--queue", "ops-node", "--name", "NodeOnlyJob", "--since", "1d")  # fmt: skip
    assert {(r["id"], r["retriedAs"]) for r in repeated} == {(d["id"], d["newId"]) for d in done}
    assert all(r["newId"] is None for r in repeated)
    async with bull_queue("ops-node", prefix) as queue:
        assert (await queue.getJobCounts("waiting"))["waiting"] == 2

    # Retried already and recorded (gone from Redis): found through "retryOf".
    n3 = (await store.get("ops-node:n3"))[0]
    await store.insert_records(
        [
            row("older", age=timedelta(hours=1), queue="ops-node", retry_of="ops-node:n3"),
            row("r3", age=timedelta(minutes=1), queue="ops-node", retry_of="ops-node:n3"),
        ]
    )
    [found] = await ok_json(env, "retry", "--id", "ops-node:n3")
    assert (found["newId"], found["retriedAs"]) == (None, "r3")
    assert n3.completed_at < (await store.get("ops-node:r3"))[0].created_at

    nothing = await bullworker(env, "retry", "--app", APP)
    assert nothing.returncode == 1
    assert "error: choose the failed jobs" in nothing.stderr
    completed = await bullworker(env, "retry", "--id", "ops-node:n4", "--app", APP)
    assert completed.returncode == 1
    assert "did not fail" in completed.stderr


def test_retry_of_is_a_checked_option() -> None:
    assert check_options({"retryOf": "ops:1"}) == {"retryOf": "ops:1"}
    for bad in (1, "", ["ops:1"]):
        with pytest.raises(PayloadError, match="retryOf must be a non-empty string"):
            check_options({"retryOf": bad})


async def test_jobs_command_shape_and_errors(env: dict[str, str]) -> None:
    helped = await bullworker(env, "jobs", "--help")
    assert helped.returncode == 0
    assert "show" in helped.stdout and "--status" in helped.stdout
    empty = await bullworker(env, "jobs", "--app", APP)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "" and "no recorded jobs match" in empty.stderr
    for args, message in [
        (["jobs", "show", "nocolon"], "must be <queue>:<jobId>"),
        (["jobs", "show", "ops:404"], "no job ops:404 in Redis or in _jobs"),
        (["jobs", "--since", "yesterday"], "--since: invalid time 'yesterday'"),
        (["prune", "--older-than", "3x"], "--older-than: invalid duration '3x'"),
    ]:
        result = await bullworker(env, *args, "--app", APP)
        assert result.returncode != 0
        assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    missing = await bullworker(env, "jobs", "show", "--app", APP)
    assert missing.returncode == 2
    assert "Missing argument 'ID'" in missing.stderr


# --------------------------------------------------------------------------- prune + retention


async def test_prune_deletes_only_old_rows(env: dict[str, str], store: JobStore) -> None:
    old = [row(f"old{i}", age=timedelta(days=40)) for i in range(5)]
    old_failed = [failed_row(f"oldf{i}", age=timedelta(days=31)) for i in range(3)]
    recent = [row("new", age=timedelta(days=29)), failed_row("newf")]
    await store.insert_records([*old, *old_failed, *recent])

    dry = await bullworker(env, "prune", "--older-than", "30d", "--dry-run", "--app", APP)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 8 row(s) finished before ")
    assert await store.count() == 10

    failed_only = await ok_json(
        env, "prune", "--older-than", "30d", "--status", "failed", "--batch-size", "2"
    )
    assert failed_only["rows"] == 3 and failed_only["status"] == "failed"
    assert not failed_only["dryRun"]
    cutoff = datetime.fromisoformat(failed_only["cutoff"].replace("Z", "+00:00"))
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)

    result = await bullworker(env, "prune", "--older-than", "30d", "--batch-size", "2", "--app", APP)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 5 row(s) finished before ")
    assert sorted(r.queue_id for r in await store.recent()) == ["new", "newf"]


async def test_retention_is_applied_by_the_leader_only(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    await store.insert_records(
        [row("old", age=timedelta(days=8)), failed_row("recent"), row("new", age=timedelta(days=6))]
    )
    config = AppConfig(
        environ={},
        bull_prefix=prefix,
        database_url=pg_dsn,
        database_schema=pg_schema,
        jobs_retention="7d",
        jobs_retention_interval=0.1,
        leader_ttl=2,
    )
    # Someone else records the queue: this process must not prune.
    lock = keys.leader_key(prefix, "ops")
    await redis_client.set(lock, "someone-else", px=60_000)
    service = RecordingService(config, ["ops"])
    await service.start()
    try:
        await asyncio.sleep(1.0)
        assert not service.is_leader
        assert await store.count() == 3
        await redis_client.delete(lock)

        async def pruned() -> bool:
            return await store.count() == 2

        await eventually(pruned, timeout=10)
        assert service.is_leader
        assert sorted(r.queue_id for r in await store.recent()) == ["new", "recent"]
    finally:
        await service.stop()


async def test_retention_survives_an_unreachable_database(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = AppConfig(
        environ={},
        bull_prefix=prefix,
        database_url="postgresql://postgres:secret@127.0.0.1:1/test",
        jobs_retention="1d",
        jobs_retention_interval=0.1,
    )
    service = RecordingService(config, ["ops"])
    caplog.set_level(logging.ERROR, logger="bullworker.recording")
    await service.start()
    try:
        await eventually(lambda: "retention failed" in caplog.text, timeout=10)
        assert service._retention is not None and not service._retention.done()
        assert "secret" not in caplog.text
    finally:
        await service.stop()


# --------------------------------------------------------------------------- doctor


async def test_doctor_is_happy_with_the_local_setup(env: dict[str, str]) -> None:
    result = await bullworker(env, "doctor", "--app", APP)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in ("connection", "redis ", "redis version", "maxmemory-policy", "database"):
        assert any(ln.startswith(f"OK    {check}") for ln in lines), (check, result.stdout)
    assert not any(ln.startswith("FAIL") for ln in lines)
    assert "socket_timeout=None" in result.stdout
    assert "OpsNightly: queue ops, cron '0 3 * * *' UTC" in result.stdout
    assert "no recorder leader" in result.stdout  # no runner in this test
    report = await ok_json(env, "doctor")
    assert report["ok"] is True
    by_check = {c["check"]: c["level"] for c in report["checks"]}
    assert by_check["redis"] == by_check["maxmemory-policy"] == by_check["database"] == "OK"
    assert {c["message"].split(":")[0] for c in report["checks"] if c["check"] == "job"} == {
        "OpsEcho", "OpsFlaky", "OpsNightly"
    }  # fmt: skip


async def test_doctor_fails_on_unreachable_redis(env: dict[str, str]) -> None:
    started = time.monotonic()
    result = await bullworker(env, "doctor", "--app", APP, REDIS_PORT="1", REDIS_TIMEOUT="1")
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")]
    assert "redis" in line and "cannot reach Redis at redis://127.0.0.1:1/0" in line
    assert "fix: start Redis" in result.stdout
    report = json.loads(
        (
            await bullworker(
                env, "doctor", "--app", APP, "--json", REDIS_PORT="1", REDIS_TIMEOUT="1"
            )
        ).stdout
    )
    assert report["ok"] is False
    assert [c["check"] for c in report["checks"] if c["level"] == "FAIL"] == ["redis"]


async def test_doctor_fails_on_missing_dependency_and_database(env: dict[str, str]) -> None:
    result = await bullworker(
        env,
        "doctor",
        "--app",
        "tests.integration.ops_app:broken_app",
        DATABASE_URL="postgresql://postgres:hunter2@127.0.0.1:1/test",
    )
    assert result.returncode == 1
    failures = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")]
    assert any("database" in ln and "unreachable" in ln for ln in failures), result.stdout
    assert any("OpsNeedsSomething" in ln and "Unregistered" in ln for ln in failures)
    assert "hunter2" not in result.stdout + result.stderr


@pytest.fixture
def evicting_redis() -> Iterator[int]:
    """A throwaway redis-server whose maxmemory-policy loses keys."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_doctor_warns_about_an_evicting_redis(
    env: dict[str, str], evicting_redis: int
) -> None:
    port = str(evicting_redis)
    result = await bullworker(env, "doctor", "--app", APP, REDIS_PORT=port)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    [warning] = [ln for ln in lines if ln.startswith("WARN  maxmemory-policy")]
    assert "maxmemory-policy is allkeys-lru" in warning
    assert "CONFIG SET maxmemory-policy noeviction" in result.stdout
    assert "redis.conf" in result.stdout
    report = await ok_json({**env, "REDIS_PORT": port}, "doctor")
    [policy] = [c for c in report["checks"] if c["check"] == "maxmemory-policy"]
    assert policy["level"] == "WARN" and report["ok"] is True


# --------------------------------------------------------------------------- store migration


async def test_an_existing_jobs_table_gets_the_retry_of_column(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    old_pg = q.PG_CREATE_TABLE.replace('    "retryOf" varchar(255) NULL,\n', "")
    old_sqlite = q.SQLITE_CREATE_TABLE.replace('    "retryOf" TEXT NULL,\n', "")
    assert "retryOf" not in old_pg + old_sqlite
    table = sql.Identifier(pg_schema, q.TABLE)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(old_pg).format(table=table))
        for statement in q.pg_ddl(table)[2:]:  # the indexes of the time, not the column's
            if "retryOf" not in statement.as_string(conn):
                conn.execute(statement)
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(old_sqlite)
    conn.close()
    for job_store in (open_store(pg_dsn, pg_schema=pg_schema), open_store(f"sqlite:///{path}")):
        async with job_store:
            await job_store.insert_records([row("1", age=timedelta(0), retry_of="ops:0")])
            [again] = await job_store.get("ops:1")
            assert again.retry_of == "ops:0"
        async with job_store:  # opening again is a no-op
            assert await job_store.count() == 1


# --------------------------------------------------------------------------- durations


def test_parse_duration() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 1h30m ") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration("0.5s") == timedelta(milliseconds=500)
    for bad in ("", "30", "d", "3x", "-1d", "0s", "1h 2"):
        with pytest.raises(DurationError, match="invalid duration"):
            parse_duration(bad)


def test_parse_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("1h", now=now) == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(DurationError, match="or an ISO datetime"):
        parse_since("yesterday")
