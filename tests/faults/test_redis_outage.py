"""Redis crashes and comes back on the same port: producers, runner and recorder carry on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, create_app
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.servers import RedisServer
from tests.faults.workload import ExecLog, Producer, dup_rows, store_rows, until, with_store

GROUP = "Redis outage"


async def outage(
    scenario: Scenario,
    redis: RedisServer,
    exec_log: ExecLog,
    tmp_path: Path,
    *,
    down_for: float,
    **settings: Any,
) -> None:
    config = AppConfig(
        environ={}, redis_url=redis.url, app_env="production", bull_prefix="outage",
        sqlite_path=str(tmp_path / "jobs.sqlite3"), redis_timeout=1.0, **settings,
    )  # fmt: skip
    scenario.settings = {"REDIS_TIMEOUT": 1, **{k.upper(): v for k, v in settings.items()}}
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    runner = app.create_runner()
    await runner.start()
    store = await with_store(None, sqlite_path=config.sqlite_path)
    producer = Producer(app)
    producing = asyncio.create_task(producer.run())
    try:
        await asyncio.sleep(1.5)
        assert runner.recording is not None
        leader = runner.recording.leaders["default"]
        leader_since = leader.leader_since
        redis.kill()  # a crash; AOF with fsync always keeps every acknowledged write
        await asyncio.sleep(down_for)
        redis.start()
        back = time.time()
        await asyncio.sleep(2.0)
        producer.stop()
        await producing

        sent = set(producer.sent)
        await until(lambda: sent <= exec_log.done(), 30, "every queued job ran")
        resumed = exec_log.first_done_after(back)
        await until(lambda: _recorded_all(store, exec_log.done()), 40, "every job recorded")
        caught_up = time.time() - back  # an upper bound: checked after the runs above
        # The events listener resumed: a job finishing now is recorded long before a sweep.
        await app.worker_service.queue_job(fault_app.FaultJob, {"n": 10_000})
        await until(lambda: 10_000 in exec_log.done(), 10, "the last job ran")
        woke = await until(lambda: _recorded_all(store, exec_log.done()), 10, "last job recorded")
        rows = await store_rows(store)
        scenario.figures(
            sent=len(sent) + 1, completed=len(exec_log.done()), recorded=len(rows),
            dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
            recovery=f"runner {resumed:.2f} s, producer "
            f"{(producer.resumed_at or back) - back:.2f} s, recorder ≤ {caught_up:.1f} s",
        )  # fmt: skip
        took = max((t for _, t, _ in producer.refused), default=0.0)
        kept = leader.leader_since == leader_since
        dups = exec_log.dup_executed()
        rerun = (
            f" {dups} jobs running at the crash could not be marked finished within the retry "
            "budget (about 28 s) and ran again after their locks expired (at-least-once)."
            if dups
            else " The jobs running at the crash were marked finished once Redis was back."
        )
        scenario.explanation = (
            f"Redis killed with SIGKILL for {down_for:g} s, then restarted on the same port "
            "(AOF, `appendfsync always`) while a producer queued a job every 50 ms and the "
            f"runner ran them. {len(producer.refused)} producer calls raised `QueueUnavailable` "
            f"(the slowest after {took:.2f} s, REDIS_TIMEOUT=1) instead of hanging. After the "
            f"restart the runner finished its first job after {resumed:.2f} s and the producer "
            "succeeded at once; every finished job reached `_jobs` once. The recorder "
            f"{'kept' if kept else 'lost and took back'} its leadership; its events listener "
            f"resumed (a job finished afterwards was recorded within {woke + 0.05:.2f} s, the "
            f"sweep is {config.recorder_sweep_interval:g} s).{rerun} Before bullworker's retry policy the runner "
            "needed 6.8 s after an 8 s outage and 19.8 s after a 31 s one (bullmq's backoff "
            "goes up to 20 s between tries)."
        )
        assert producer.refused, "the outage should have refused some producer calls"
        assert took < config.redis_timeout * 1.5 + 0.5  # the deadline sweep is coarse
        assert resumed is not None and resumed < 3.0
        assert woke < 3.0
        assert dup_rows(rows) == 0
        assert {r.data["n"] for r in rows} == exec_log.done()
        assert all(r.status == "completed" for r in rows)
    finally:
        producer.stop()
        await producing
        await runner.stop(grace=1)
        await app.stop()
        await store.close()


async def _recorded_all(store: Any, done: set[int]) -> bool:
    return await store.count() >= len(done)


async def test_redis_crash_for_5_s(
    scenario: Scenario, aof_redis: RedisServer, exec_log: ExecLog, tmp_path: Path
) -> None:
    """Redis crashes for 5 s."""
    scenario.injected = "SIGKILL redis-server, restart after 5 s"
    await outage(
        scenario, aof_redis, exec_log, tmp_path, down_for=5.0,
        leader_ttl=30.0, recorder_sweep_interval=30.0,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_redis_crash_for_30_s(
    scenario: Scenario, aof_redis: RedisServer, exec_log: ExecLog, tmp_path: Path
) -> None:
    """Redis crashes for 30 s, longer than bullmq's 20 s backoff cap and the leader TTL."""
    scenario.injected = "SIGKILL redis-server, restart after 30 s"
    await outage(
        scenario, aof_redis, exec_log, tmp_path, down_for=30.0,
        recorder_sweep_interval=30.0, worker_lock_duration=10_000,
        worker_stalled_interval=5_000,
    )  # fmt: skip
