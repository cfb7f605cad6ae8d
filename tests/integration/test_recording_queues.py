"""Which queues a runner records: its consumed queues plus RECORD_QUEUES, each by one leader.

A queue of RECORD_QUEUES is recorded without a Worker, so jobs that Node both
produces and processes end up in ``_jobs`` while no Python handler touches
them. The Node scripts are in tests/node (``npm ci --prefix tests/node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bullmq import Queue

from bullworker import App, AppConfig, BaseJob, JobRegistry, create_app
from bullworker import worker_job as job
from bullworker.core import keys
from bullworker.history.backlog import recording_backlog
from bullworker.history.recording import RecordingService
from bullworker.history.store import JobRecord, JobStore
from bullworker.runtime.runner import Runner
from tests.conftest import REDIS_URL
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NODE_QUEUE = "rq-node"
PYTHON_QUEUE = "rq-python"

reg = JobRegistry()
#: (job name, data) of every run of a Python handler in this module.
CALLS: list[tuple[str, Any]] = []


@job(registry=reg)
class PythonOnlyJob(BaseJob[dict[str, Any], dict[str, Any]]):
    QUEUE_NAME = PYTHON_QUEUE

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append(("PythonOnlyJob", data))
        return {"by": "python"}


@job(registry=reg)
class AlphaJob(BaseJob[dict[str, Any], dict[str, Any]]):
    QUEUE_NAME = "rq-alpha"

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append(("AlphaJob", data))
        return {"n": data["n"]}


@job(registry=reg)
class BetaJob(BaseJob[dict[str, Any], dict[str, Any]]):
    QUEUE_NAME = "rq-beta"

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        CALLS.append(("BetaJob", data))
        if data["n"] % 4 == 0:
            raise ValueError(f"beta {data['n']}")
        return {"n": data["n"]}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


def make_config(prefix: str, pg_dsn: str, pg_schema: str, **settings: Any) -> AppConfig:
    values: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "bull_prefix": prefix,
        "app_env": "production",
        "database_url": pg_dsn,
        "database_schema": pg_schema,
        "recorder_sweep_interval": 0.5,
        "shutdown_grace": 2.0,
    }
    return AppConfig(environ={}, **{**values, **settings})


def make_app(config: AppConfig, registry: JobRegistry = reg) -> App:
    return create_app(config=config, enable_worker=True, registry=registry, tracing=False)


@contextlib.asynccontextmanager
async def running(*runners: Runner) -> AsyncIterator[None]:
    started: list[Runner] = []
    try:
        for runner in runners:
            await runner.start()
            started.append(runner)
        yield
    finally:
        for runner in started:
            await runner.stop(grace=1)


def recording_of(runner: Runner) -> RecordingService:
    [service] = [s for s in runner.services if isinstance(s, RecordingService)]
    return service


@contextlib.asynccontextmanager
async def raw_queue(name: str, prefix: str) -> AsyncIterator[Any]:
    """A plain bullmq Queue on the test Redis, to add jobs and read them back."""
    queue = Queue(name, {"prefix": prefix, "connection": REDIS_URL})
    try:
        yield queue
    finally:
        await queue.close()


async def unrecorded_in_redis(client: aioredis.Redis, prefix: str, queue: str) -> int:
    """Finished jobs in Redis not recorded yet (recorded ones stay for the keep window)."""
    return (await recording_backlog(client, prefix, queue)).total


async def nothing_to_record(client: aioredis.Redis, prefix: str, queue: str) -> bool:
    return await unrecorded_in_redis(client, prefix, queue) == 0


async def rows_of(store: JobStore, queue: str) -> list[JobRecord]:
    return await store.recent(queue=queue, limit=1000)


def assert_each_once(rows: list[JobRecord], ids: list[str]) -> None:
    assert sorted(r.queue_id for r in rows) == sorted(ids), (rows, ids)


# --------------------------------------------------------------------------- Node


def node_env(prefix: str, queue: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": REDIS_URL, "PREFIX": prefix, "QUEUE": queue}


def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests need Node.js 20+")
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        pytest.fail("tests/node/node_modules is missing: run `npm ci --prefix tests/node`")
    return node


async def start_node(
    script: str, prefix: str, queue: str, spec: dict[str, Any]
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        node_bin(),
        script,
        json.dumps(spec),
        cwd=NODE_DIR,
        env=node_env(prefix, queue),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def node_result(proc: asyncio.subprocess.Process, timeout: float = 15.0) -> Any:
    """Wait for a Node script; return the JSON line it printed (fail on a non-zero exit)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"a node script did not exit within {timeout:g} s")
    lines = [line for line in out.decode().split("\n") if line.strip()]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"node exited with {proc.returncode}\nstdout: {out.decode()}\n{err.decode()}")
    return json.loads(lines[-1])


async def run_node(script: str, prefix: str, queue: str, spec: dict[str, Any]) -> Any:
    return await node_result(await start_node(script, prefix, queue, spec))


# --------------------------------------------------------------------------- settings


# --------------------------------------------------------------------------- recording


@pytest.mark.node
async def test_jobs_node_produces_and_consumes_are_recorded_by_a_python_runner(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    app = make_app(make_config(prefix, pg_dsn, pg_schema, record_queues=NODE_QUEUE))
    runner = app.create_runner(queues=[PYTHON_QUEUE])
    assert runner.queues == [PYTHON_QUEUE]
    assert runner.recorded_queues == [PYTHON_QUEUE, NODE_QUEUE]
    jobs: list[dict[str, Any]] = [{"name": "NodeMail", "data": {"n": n}} for n in range(6)]
    jobs += [
        {"name": "NodeMail", "data": {"n": 6, "fail": True}},
        {"name": "NodeReport", "data": {"n": 7, "fail": True}, "opts": {"attempts": 2}},
        {"name": "NodeReport", "data": {"n": 8}, "opts": {"delay": 100}},
    ]
    async with running(runner):
        assert set(runner.workers) == {PYTHON_QUEUE}  # no Worker on the Node queue
        leader = recording_of(runner).leaders[NODE_QUEUE]
        await eventually(lambda: leader.is_leader, timeout=5)
        consumer = await start_node(
            "consume_finished.mjs", prefix, NODE_QUEUE, {"count": len(jobs), "deadlineMs": 12000}
        )
        produced = await run_node("produce.mjs", prefix, NODE_QUEUE, {"jobs": jobs})
        consumed = await node_result(consumer)
        ids = [j["id"] for j in produced["jobs"]]
        assert consumed["runs"] == len(jobs) + 1  # one retry, all by Node
        assert len(consumed["completed"]) == 7 and len(consumed["failed"]) == 2, consumed

        async def all_recorded() -> bool:
            return await store.count(queue=NODE_QUEUE) == len(jobs)

        await eventually(all_recorded, timeout=10)
        await eventually(lambda: nothing_to_record(redis_client, prefix, NODE_QUEUE))

    rows = await rows_of(store, NODE_QUEUE)
    assert_each_once(rows, ids)
    returned = {c["id"]: c["returned"] for c in consumed["completed"]}
    by_id = {r.queue_id: r for r in rows}
    for spec, job_id in zip(jobs, ids, strict=True):
        row = by_id[job_id]
        assert (row.name, row.data) == (spec["name"], spec["data"])
        if spec["data"].get("fail"):
            assert row.status == "failed"
            assert row.result["reason"] == f"node refused {job_id}"
            assert row.attempt == spec.get("opts", {}).get("attempts", 1)
        else:
            assert row.status == "completed"
            assert (
                row.result == returned[job_id] == {"by": "node", "id": job_id, "echo": spec["data"]}
            )
            assert row.attempt == 1
        assert row.executed_at is not None
    assert CALLS == []  # no Python handler ran a Node job
    async with raw_queue(NODE_QUEUE, prefix) as queue:
        states = ("waiting", "active", "delayed", "failed", "completed")
        # Recorded, and kept in Redis for the keep window (Node tools still see them).
        assert await queue.getJobCounts(*states) == dict(zip(states, (0, 0, 0, 2, 7), strict=True))


async def test_disjoint_pools_each_record_their_own_queues_once(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    config = make_config(prefix, pg_dsn, pg_schema)
    alpha_app = make_app(config)
    beta_app = make_app(make_config(prefix, pg_dsn, pg_schema, worker_queues="rq-beta"))
    alphas = [alpha_app.create_runner(queues=["rq-alpha"]) for _ in range(2)]
    betas = [beta_app.create_runner() for _ in range(2)]
    # A runner with no jobs at all that only records both queues competes too.
    recorder_only = make_app(
        make_config(prefix, pg_dsn, pg_schema, record_queues="rq-alpha,rq-beta"), JobRegistry()
    ).create_runner()
    assert [r.queues for r in (*alphas, *betas, recorder_only)] == [
        ["rq-alpha"], ["rq-alpha"], ["rq-beta"], ["rq-beta"], []
    ]  # fmt: skip
    assert recorder_only.recorded_queues == ["rq-alpha", "rq-beta"]
    async with running(*alphas, *betas, recorder_only):
        assert not recorder_only.workers
        alpha_ids = await alpha_app.worker_service.queue_jobs(
            AlphaJob, [{"n": n} for n in range(40)]
        )
        beta_ids = await beta_app.worker_service.queue_jobs(BetaJob, [{"n": n} for n in range(40)])

        async def all_recorded() -> bool:
            return await store.count() == 80

        await eventually(all_recorded, timeout=15)
        for queue in ("rq-alpha", "rq-beta"):
            await eventually(lambda q=queue: nothing_to_record(redis_client, prefix, q))
        # Each queue has one recorder among the runners that compete for it.
        for queue, pool, others in (("rq-alpha", alphas, betas), ("rq-beta", betas, alphas)):
            competing = [recording_of(r).leaders[queue] for r in (*pool, recorder_only)]
            assert sum(leader.is_leader for leader in competing) == 1
            assert all(queue not in recording_of(r).leaders for r in others)
    await alpha_app.stop()
    await beta_app.stop()

    alpha_rows = await rows_of(store, "rq-alpha")
    beta_rows = await rows_of(store, "rq-beta")
    assert_each_once(alpha_rows, alpha_ids)
    assert_each_once(beta_rows, beta_ids)
    assert {r.status for r in alpha_rows} == {"completed"}
    assert sorted(r.data["n"] for r in beta_rows if r.status == "failed") == list(range(0, 40, 4))
    assert len(CALLS) == 80  # each job ran once, in its own pool


async def test_losing_the_leader_lock_stops_recording_until_it_is_back(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    app = make_app(make_config(prefix, pg_dsn, pg_schema, leader_ttl=1.0))
    runner = app.create_runner(queues=["rq-alpha"])
    lock = keys.leader_key(prefix, "rq-alpha")

    async def recorded(n: int) -> bool:
        return await store.count(queue="rq-alpha") == n

    async with running(runner):
        leader = recording_of(runner).leaders["rq-alpha"]
        recorder = recording_of(runner).recorders["rq-alpha"]
        await eventually(lambda: leader.is_leader and recorder.running, timeout=5)
        first = await app.worker_service.queue_jobs(AlphaJob, [{"n": n} for n in range(5)])
        await eventually(lambda: recorded(5), timeout=5)

        # Someone else now owns the lock: the renewal fails and the recorder stops.
        await redis_client.set(lock, "another-holder")
        await eventually(lambda: not leader.is_leader and not recorder.running, timeout=3)
        later = await app.worker_service.queue_jobs(AlphaJob, [{"n": n} for n in range(5, 15)])

        async def ten_waiting() -> bool:
            return await unrecorded_in_redis(redis_client, prefix, "rq-alpha") == 10

        await eventually(ten_waiting)
        await asyncio.sleep(1.5)  # three sweeps and six lock attempts' worth of time
        assert await store.count(queue="rq-alpha") == 5
        assert await unrecorded_in_redis(redis_client, prefix, "rq-alpha") == 10
        assert await redis_client.get(lock) == "another-holder"
        assert not leader.is_leader and not recorder.running

        # The other holder lets go: this runner takes the lock again and catches up.
        assert await redis_client.delete(lock) == 1
        await eventually(lambda: leader.is_leader and recorder.running, timeout=3)
        await eventually(lambda: recorded(15), timeout=5)
        await eventually(lambda: nothing_to_record(redis_client, prefix, "rq-alpha"))
        assert await redis_client.get(lock) == leader.token
    await app.stop()
    assert_each_once(await rows_of(store, "rq-alpha"), first + later)


# --------------------------------------------------------------------------- CLI


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def start_env(prefix: str, pg_dsn: str, pg_schema: str) -> dict[str, str]:
    """A ``bullworker start`` environment of this test's settings only."""
    ours = {name.upper() for name in AppConfig.settings()}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("BULLWORKER_")}
    env.update(
        REDIS_URL=REDIS_URL,
        BULL_PREFIX=prefix,
        APP_ENV="production",
        DATABASE_URL=pg_dsn,
        DATABASE_SCHEMA=pg_schema,
        RECORDER_SWEEP_INTERVAL="0.5",
        LEADER_TTL="2",
        SHUTDOWN_GRACE="2",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.mark.node
async def test_start_record_queues_records_a_node_queue_in_every_process(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    async with raw_queue(NODE_QUEUE, prefix) as queue:
        added = await queue.add("NodeOnlyJob", {"to": "node"})
    cmd = [sys.executable, "-m", "bullworker", "start", "--processes", "2",
           "--record-queues", NODE_QUEUE, "--app", "tests.integration.recorder_app:app"]  # fmt: skip
    sup = subprocess.Popen(cmd, cwd=ROOT, env=start_env(prefix, pg_dsn, pg_schema))
    info_key = keys.leader_info_key(prefix, NODE_QUEUE)

    async def leader_pid() -> int:
        return int(await redis_client.hget(info_key, "pid") or 0)

    async def has_leader() -> bool:
        return await leader_pid() != 0

    try:
        # A worker process records the Node queue: the option reached the children.
        await eventually(lambda: len(children(sup.pid)) == 2, timeout=10)
        await eventually(has_leader, timeout=10)
        assert await leader_pid() in children(sup.pid)
        await asyncio.sleep(1.0)
        async with raw_queue(NODE_QUEUE, prefix) as queue:
            assert await queue.getJobState(added.id) == "waiting"  # no Python Worker took it
        [seen] = (await run_node("consume.mjs", prefix, NODE_QUEUE, {"count": 1}))["jobs"]
        assert seen["id"] == added.id

        async def recorded() -> bool:
            return len(await store.get(f"{NODE_QUEUE}:{added.id}")) == 1

        await eventually(recorded, timeout=10)
        [row] = await store.get(f"{NODE_QUEUE}:{added.id}")
        assert (row.status, row.name, row.result) == ("completed", "NodeOnlyJob", seen["returned"])
        await eventually(lambda: nothing_to_record(redis_client, prefix, NODE_QUEUE))
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(15)
        except subprocess.TimeoutExpired:
            sup.kill()
            sup.wait()
    assert sup.returncode == 0
