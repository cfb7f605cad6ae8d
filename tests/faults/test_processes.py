"""``bullworker start --processes N``: a child killed mid-stream is replaced; one recorder."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis.asyncio as aioredis

from bullworker.core import keys
from tests.conftest import REDIS_URL
from tests.faults.report import Scenario
from tests.faults.workload import ExecLog, Proc, base_env, dup_rows, store_rows, until, with_store
from tests.helpers import bull_queue

GROUP = "Processes"
JOBS = 400


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


async def test_child_killed_mid_stream(
    scenario: Scenario, prefix: str, exec_log: ExecLog, tmp_path: Path
) -> None:
    """A worker process (the recorder leader) is killed mid-stream."""
    scenario.injected = f"SIGKILL the leader child of 3 while {JOBS} jobs run"
    settings = {
        "LEADER_TTL": "2", "RECORDER_SWEEP_INTERVAL": "1", "SHUTDOWN_GRACE": "2",
        "WORKER_LOCK_DURATION": "2000", "WORKER_STALLED_INTERVAL": "1000",
    }  # fmt: skip
    scenario.settings = {"--processes": 3, **settings}
    sqlite = str(tmp_path / "jobs.sqlite3")
    env = base_env(
        prefix, REDIS_URL=REDIS_URL, SQLITE_PATH=sqlite, FAULT_EXEC_LOG=str(exec_log.path),
        **settings,
    )  # fmt: skip
    sup = Proc.runner(env, tmp_path / "supervisor.log", "--processes", "3")
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    info = keys.leader_info_key(prefix, "default")
    store = await with_store(None, sqlite_path=sqlite)
    try:
        await until(lambda: len(children(sup.pid)) == 3, 15, "3 worker processes")
        await until(lambda: _leader_pid(client, info), 15, "a recorder leader")
        first = children(sup.pid)
        async with bull_queue("default", prefix) as queue:
            jobs = [{"name": "FaultJob", "data": {"n": n, "sleep": 0.05}} for n in range(JOBS)]
            await queue.addBulk(jobs[: JOBS // 2])
            await until(lambda: len(exec_log.done()) >= 50, 20, "jobs running")
            victim = int(await client.hget(info, "pid") or 0)
            assert victim in first
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            await queue.addBulk(jobs[JOBS // 2 :])
        await until(
            lambda: len(children(sup.pid)) == 3 and victim not in children(sup.pid), 15, "restart"
        )
        replaced = time.monotonic() - killed
        await until(lambda: _leader_is_alive(client, info, children(sup.pid)), 15, "new leader")
        took_over = time.monotonic() - killed  # upper bounds: polled one after the other
        await until(lambda: set(range(JOBS)) <= exec_log.done(), 60, "every job ran")
        await until(lambda: _count_is(store, JOBS), 30, "every job recorded")
        rows = await store_rows(store)
        became = sup.output().count("became leader of")
        scenario.figures(
            sent=JOBS, completed=len(exec_log.done()), recorded=len(rows),
            dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
            recovery=f"child replaced ≤ {replaced:.1f} s, leader ≤ {took_over:.1f} s",
        )  # fmt: skip
        scenario.explanation = (
            f"The supervisor ran 3 worker processes; the one holding the recorder lock was "
            f"killed with SIGKILL while {JOBS} jobs were queued. The supervisor started a "
            f"replacement {replaced:.1f} s later (only that one: the others kept their pids), "
            f"another process took the recorder lock {took_over:.1f} s after the kill (LEADER_TTL "
            f"2 s) and {became} 'became leader' lines were logged in all, one before and one "
            f"after the kill: never two recorders at once. The killed process's running jobs ran "
            f"again after their locks expired ({exec_log.dup_executed()} duplicate executions); "
            "every job has one row."
        )
        assert len(children(sup.pid) & first) == 2
        assert became == 2
        assert dup_rows(rows) == 0
        assert {r.data["n"] for r in rows} == set(range(JOBS))
        sup.signal(signal.SIGTERM)
        assert await sup.wait(20) == 0
    finally:
        sup.close()
        await client.aclose()
        await store.close()


async def _leader_pid(client: aioredis.Redis, key: str) -> bool:
    return bool(await client.hget(key, "pid"))


async def _leader_is_alive(client: aioredis.Redis, key: str, alive: set[int]) -> bool:
    return int(await client.hget(key, "pid") or 0) in alive


async def _count_is(store: object, n: int) -> bool:
    return bool(await store.count() == n)  # type: ignore[attr-defined]
