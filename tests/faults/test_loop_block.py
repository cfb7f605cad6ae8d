"""An async handler that blocks the event loop: what it costs, and the watchdog's warning."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, create_app
from bullworker.app import App
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.workload import (
    ROOT,
    ExecLog,
    Proc,
    base_env,
    dup_rows,
    store_rows,
    until,
    with_store,
)

GROUP = "Bad input"
JOBS = 10


@pytest.fixture
async def make_runner(prefix: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """An in-process runner of the fault app with the given settings."""
    apps: list[App] = []

    async def make(**settings: Any) -> App:
        config = AppConfig(
            environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production",
            sqlite_path=str(tmp_path / "jobs.sqlite3"), recorder_sweep_interval=1.0,
            loop_block_warning=0.5, **settings,
        )  # fmt: skip
        app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
        apps.append(app)
        await app.start(run_worker=True)
        return app

    yield make
    for app in apps:
        await app.stop(grace=1)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bullworker.watchdog"]


async def _recorded(store: Any, n: int) -> bool:
    return bool(await store.count() >= n)


async def test_loop_blocked_within_the_lock(
    scenario: Scenario,
    make_runner: Callable[..., Any],
    exec_log: ExecLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An async handler blocks the event loop for 2 s (time.sleep)."""
    scenario.injected = "time.sleep(2) in async def handle; 10 jobs due during it"
    scenario.settings = {"LOOP_BLOCK_WARNING": 0.5, "WORKER_LOCK_DURATION": 30000}
    caplog.set_level(logging.WARNING, logger="bullworker.watchdog")
    app = await make_runner()
    items = [{"n": n, "sleep": 0.05} for n in range(JOBS)]
    due = time.time() + 0.5
    await app.worker_service.queue_jobs(fault_app.FaultJob, items, delay=500)
    job_id = await app.worker_service.queue_job(fault_app.LoopBlockerJob, {"n": 100, "sleep": 2})
    await until(lambda: set(range(JOBS)) | {100} <= exec_log.done(), 20, "every job ran")
    late = max(exec_log.done_at()[n] for n in range(JOBS)) - due
    store = await with_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3"))
    try:
        await until(lambda: _recorded(store, JOBS + 1), 20, "every job recorded")
        rows = await store_rows(store)
    finally:
        await store.close()
    # The watchdog thread says the loop ran again at its next check, which a loaded
    # machine may delay past the recording above.
    await until(lambda: any("ran again after" in w for w in _warnings(caplog)), 5, "the all-clear")
    warnings = _warnings(caplog)
    blocked = next((w for w in warnings if "blocked for" in w), "")
    scenario.figures(
        sent=JOBS + 1, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
        recovery=f"jobs due meanwhile {late:.1f} s late",
    )  # fmt: skip
    shown = blocked.split(": nothing else")[0].replace(str(ROOT) + "/", "")
    scenario.explanation = (
        "While the handler slept in `time.sleep`, nothing else of the runner ran: 10 jobs that "
        f"became due meanwhile finished up to {late:.1f} s late. With the default 30 s lock "
        f"nothing ran twice. The watchdog (new, `LOOP_BLOCK_WARNING`) logged from its thread: "
        f"`{shown}`, and when the loop ran again how long it was blocked."
    )
    assert f"job LoopBlockerJob id={job_id} queue=default" in blocked
    assert "fault_app.py" in blocked and "in handle" in blocked
    assert any("ran again after" in w for w in warnings)
    assert exec_log.dup_executed() == 0 and dup_rows(rows) == 0
    assert late > 1.0  # the loop really was blocked


async def test_loop_blocked_longer_than_the_lock(
    scenario: Scenario,
    make_runner: Callable[..., Any],
    prefix: str,
    exec_log: ExecLog,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An async handler blocks the loop for 4 s, longer than the 1.5 s lock."""
    scenario.injected = "time.sleep(4) in async def handle with 5 jobs running; a 2nd runner"
    lock = {"WORKER_LOCK_DURATION": "1500", "WORKER_STALLED_INTERVAL": "1000"}
    scenario.settings = {"LOOP_BLOCK_WARNING": 0.5, **lock}
    caplog.set_level(logging.WARNING, logger="bullworker.watchdog")
    app = await make_runner(worker_lock_duration=1500, worker_stalled_interval=1000)
    await app.worker_service.queue_jobs(
        fault_app.FaultJob, [{"n": n, "sleep": 1.0, "rerun_sleep": 0.05} for n in range(5)]
    )
    await until(lambda: len(exec_log.started()) == 5, 10, "5 jobs running")
    await app.worker_service.queue_job(
        fault_app.LoopBlockerJob, {"n": 100, "sleep": 4, "rerun_sleep": 0}
    )
    await until(lambda: 100 in exec_log.started(), 10, "the blocker running")
    env = base_env(
        prefix, REDIS_URL=REDIS_URL, SQLITE_PATH=str(tmp_path / "jobs.sqlite3"),
        FAULT_EXEC_LOG=str(exec_log.path), LEADER_TTL="2", **lock,
    )  # fmt: skip
    other = Proc.runner(env, tmp_path / "other.log")
    store = await with_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3"))
    try:
        await until(lambda: set(range(5)) | {100} <= exec_log.done(), 30, "every job ran")
        await until(lambda: _recorded(store, 6), 30, "every job recorded")
        rows = await store_rows(store)
    finally:
        other.close()
        await store.close()
    moved = {r.n for r in exec_log.runs() if r.event == "start" and r.pid == other.pid}
    scenario.figures(
        sent=6, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
    )  # fmt: skip
    scenario.explanation = (
        "The blocked runner could not renew its locks: after 1.5 s they expired, and stalled "
        "checks (the second runner's, and the first runner's own once its loop ran again) put "
        "the jobs back while the first runner still held them: "
        f"{exec_log.dup_executed()} duplicate executions ({len(moved)} of them on the "
        "second runner). Recording stayed exactly-once (one row per job). Keep "
        "WORKER_LOCK_DURATION well above the longest blocking a handler can do, or better "
        "never block: the watchdog names the job that does."
    )
    assert exec_log.dup_executed() >= 5
    assert dup_rows(rows) == 0
    assert any("LoopBlockerJob" in w for w in _warnings(caplog))
