"""A runner is killed with SIGKILL mid-job: its jobs run again on another runner, recorded once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from bullworker import AppConfig, create_app
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.workload import ExecLog, Proc, base_env, dup_rows, store_rows, until, with_store

GROUP = "Runner killed"


@pytest.mark.parametrize(
    ("lock_ms", "stalled_ms"),
    [
        pytest.param(3000, 1000, id="lock-3s"),
        pytest.param(
            30000, 30000, id="defaults", marks=[pytest.mark.slow, pytest.mark.timeout(240)]
        ),
    ],
)
async def test_runner_killed_mid_job(
    scenario: Scenario,
    prefix: str,
    exec_log: ExecLog,
    tmp_path: Path,
    lock_ms: int,
    stalled_ms: int,
) -> None:
    """SIGKILL a runner with 4 jobs running."""
    scenario.title += f" (lock {lock_ms // 1000} s, stalled check every {stalled_ms // 1000} s)"
    scenario.injected = "SIGKILL one of two runners while it runs 4 jobs"
    settings = {
        "WORKER_CONCURRENCY": "4", "WORKER_LOCK_DURATION": str(lock_ms),
        "WORKER_STALLED_INTERVAL": str(stalled_ms), "LEADER_TTL": "2",
        "RECORDER_SWEEP_INTERVAL": "1",
    }  # fmt: skip
    scenario.settings = dict(settings)
    sqlite = str(tmp_path / "jobs.sqlite3")
    env = base_env(
        prefix, REDIS_URL=REDIS_URL, SQLITE_PATH=sqlite, FAULT_EXEC_LOG=str(exec_log.path),
        **settings,
    )  # fmt: skip
    config = AppConfig(environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production")
    producer = create_app(config=config, registry=fault_app.registry)
    victim = Proc.runner(env, tmp_path / "victim.log")
    survivor: Proc | None = None
    store = await with_store(None, sqlite_path=sqlite)
    try:
        # The victim alone first, so that it surely holds 4 jobs when it dies.
        await producer.worker_service.queue_jobs(
            fault_app.FaultJob, [{"n": n, "sleep": 1.0, "rerun_sleep": 0.1} for n in range(4)]
        )
        await until(lambda: len(exec_log.started()) == 4, 20, "4 jobs running")
        survivor = Proc.runner(env, tmp_path / "survivor.log")
        victim.signal(signal.SIGKILL)
        killed = time.time()
        await producer.worker_service.queue_jobs(
            fault_app.FaultJob, [{"n": n, "sleep": 0.1} for n in range(4, 20)]
        )
        timeout = (lock_ms + stalled_ms) / 1000 + 20
        await until(lambda: set(range(20)) <= exec_log.done(), timeout, "every job ran")
        reruns = [exec_log.done_at()[n] - killed for n in range(4)]
        await until(lambda: _count_is(store, 20), 30, "every job recorded")
        rows = await store_rows(store)
        scenario.figures(
            sent=20, completed=len(exec_log.done()), recorded=len(rows),
            dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
            recovery=f"reran {max(reruns):.1f} s after the kill",
        )  # fmt: skip
        scenario.explanation = (
            "A runner was killed with SIGKILL while it ran 4 jobs of 1 s; a second runner "
            "was running too. The killed jobs stayed active in Redis with their locks; when the "
            f"locks expired ({lock_ms / 1000:g} s after their last renewal) the second runner's "
            f"stalled check (every {stalled_ms / 1000:g} s) put them back and ran them again "
            f"at most {max(reruns):.1f} s after the kill: 4 duplicate executions "
            "(at-least-once), one row each. A check marks the active jobs and a later one moves "
            "those whose lock is gone, so the delay is at most about max(WORKER_LOCK_DURATION, "
            "WORKER_STALLED_INTERVAL) + WORKER_STALLED_INTERVAL. Shorter values find dead "
            "runners sooner, but a job whose runner stalls longer than the lock then runs twice "
            "(see the blocked-loop scenario)."
        )
        assert exec_log.dup_executed() == 4
        assert dup_rows(rows) == 0
        assert max(reruns) < (max(lock_ms, stalled_ms) + stalled_ms) / 1000 + 3
        assert {r.data["n"] for r in rows} == set(range(20))
    finally:
        victim.close()
        if survivor is not None:
            survivor.close()
        await producer.stop()
        await store.close()


async def _count_is(store: object, n: int) -> bool:
    return bool(await store.count() == n)  # type: ignore[attr-defined]
