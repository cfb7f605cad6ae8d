"""Shutdown of ``bullworker start``: graceful within the grace, forced after it, at once twice."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bullworker import App, AppConfig, create_app
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.workload import ExecLog, Proc, base_env, dup_rows, store_rows, until, with_store

GROUP = "Shutdown"

SETTINGS = {
    "WORKER_CONCURRENCY": "3",
    "WORKER_LOCK_DURATION": "2000",
    "WORKER_STALLED_INTERVAL": "1000",
    "LEADER_TTL": "2",
    "RECORDER_SWEEP_INTERVAL": "1",
}

Start = Callable[..., Proc]


@pytest.fixture
async def producer(prefix: str) -> AsyncIterator[App]:
    config = AppConfig(environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production")
    app = create_app(config=config, registry=fault_app.registry)
    yield app
    await app.stop()


@pytest.fixture
def start(prefix: str, tmp_path: Path, exec_log: ExecLog) -> Any:
    """Start ``bullworker start`` processes of the fault app; all killed at the end."""
    procs: list[Proc] = []

    def run(**env: str) -> Proc:
        values = {**SETTINGS, "REDIS_URL": REDIS_URL, "FAULT_EXEC_LOG": str(exec_log.path),
                  "SQLITE_PATH": str(tmp_path / "jobs.sqlite3"), **env}  # fmt: skip
        proc = Proc.runner(base_env(prefix, **values), tmp_path / f"runner{len(procs)}.log")
        procs.append(proc)
        return proc

    yield run
    for proc in procs:
        proc.close()


async def finish_with_second_runner(
    start: Start, exec_log: ExecLog, tmp_path: Path, numbers: set[int]
) -> tuple[float, list[Any]]:
    """Run what is left on a new runner; return (seconds until all ran, rows)."""
    began = time.monotonic()
    second = start()
    await until(lambda: numbers <= exec_log.done(), 30, "every job ran")
    took = time.monotonic() - began
    store = await with_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3"))
    try:
        await until(lambda: _count_is(store, len(numbers)), 20, "every job recorded")
        rows = await store_rows(store)
    finally:
        await store.close()
    second.signal(signal.SIGTERM)
    assert await second.wait(20) == 0
    return took, rows


async def _count_is(store: Any, n: int) -> bool:
    return bool(await store.count() == n)


async def test_sigterm_lets_running_jobs_finish(
    scenario: Scenario, start: Start, producer: App, exec_log: ExecLog, tmp_path: Path
) -> None:
    """SIGTERM: running jobs finish within the grace."""
    scenario.injected = "SIGTERM with 3 jobs of 1.5 s running"
    scenario.settings = {**SETTINGS, "SHUTDOWN_GRACE": 10}
    runner = start(SHUTDOWN_GRACE="10")
    await producer.worker_service.queue_jobs(
        fault_app.FaultJob, [{"n": n, "sleep": 1.5} for n in range(6)]
    )
    await until(lambda: sum(exec_log.started().values()) == 3, 20, "3 jobs running")
    signalled = time.monotonic()
    runner.signal(signal.SIGTERM)
    code = await runner.wait(15)
    exited = time.monotonic() - signalled
    first_three = set(exec_log.started())
    assert exec_log.done() == first_three, "the running jobs finished before the exit"
    _, rows = await finish_with_second_runner(start, exec_log, tmp_path, set(range(6)))
    scenario.figures(
        sent=6, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
        recovery=f"exit {exited:.1f} s after SIGTERM (grace 10 s)",
    )  # fmt: skip
    scenario.explanation = (
        f"`bullworker start` got SIGTERM while 3 jobs of 1.5 s ran (concurrency 3, 6 queued). "
        f"It took no new job, let the 3 finish and exited with status {code} after "
        f"{exited:.1f} s. A second runner ran the 3 others; each job ran once, one row each."
    )
    assert code == 0
    assert exited < 5
    assert exec_log.dup_executed() == 0 and dup_rows(rows) == 0


async def test_grace_expires_and_forced_jobs_run_again(
    scenario: Scenario, start: Start, producer: App, exec_log: ExecLog, tmp_path: Path
) -> None:
    """Grace expires: forced jobs come back through the stalled path."""
    scenario.injected = "SIGTERM with 2 async + 1 sync job of 30 s running, grace 1 s"
    scenario.settings = {**SETTINGS, "SHUTDOWN_GRACE": 1}
    runner = start(SHUTDOWN_GRACE="1")
    ids = await producer.worker_service.queue_jobs(
        fault_app.FaultJob, [{"n": n, "sleep": 30, "rerun_sleep": 0.2} for n in range(2)]
    )
    ids.append(
        await producer.worker_service.queue_job(
            fault_app.FaultSyncJob, {"n": 2, "sleep": 30, "rerun_sleep": 0.2}
        )
    )
    await until(lambda: sum(exec_log.started().values()) == 3, 20, "3 jobs running")
    signalled = time.monotonic()
    runner.signal(signal.SIGTERM)
    code = await runner.wait(15)
    exited = time.monotonic() - signalled
    output = runner.output()
    assert not exec_log.done()
    took, rows = await finish_with_second_runner(start, exec_log, tmp_path, {0, 1, 2})
    scenario.figures(
        sent=3, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
        recovery=f"exit {exited:.1f} s; rerun {took:.1f} s after the next runner started",
    )  # fmt: skip
    scenario.explanation = (
        "Three jobs that take 30 s (two `async def`, one plain `def` in a thread, which "
        "cannot be cancelled) were running at SIGTERM with `SHUTDOWN_GRACE=1`. The runner "
        f"force-closed after the grace and exited with status {code} after {exited:.1f} s "
        "without waiting for the stuck thread. The jobs stayed active in Redis; the next "
        f"runner's stalled check returned them {took:.1f} s after it started (lock 2 s + "
        "check every 1 s) and ran them again: 3 duplicate executions, the at-least-once "
        "case, and still one row per job."
    )
    assert code == 0
    assert exited < 5
    assert "force-closing" in output
    assert exec_log.dup_executed() == 3 and dup_rows(rows) == 0


async def test_second_signal_exits_at_once(
    scenario: Scenario, start: Start, producer: App, exec_log: ExecLog, tmp_path: Path
) -> None:
    """A second signal exits at once."""
    scenario.injected = "SIGTERM, then SIGINT 0.5 s later, grace 30 s"
    scenario.settings = {**SETTINGS, "SHUTDOWN_GRACE": 30}
    runner = start(SHUTDOWN_GRACE="30")
    await producer.worker_service.queue_job(
        fault_app.FaultJob, {"n": 0, "sleep": 60, "rerun_sleep": 0.2}
    )
    await until(lambda: sum(exec_log.started().values()) == 1, 20, "the job running")
    runner.signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert runner.popen.poll() is None, "waiting within the grace"
    signalled = time.monotonic()
    runner.signal(signal.SIGINT)
    code = await runner.wait(10)
    exited = time.monotonic() - signalled
    took, rows = await finish_with_second_runner(start, exec_log, tmp_path, {0})
    scenario.figures(
        sent=1, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
        recovery=f"exit {exited:.2f} s after the 2nd signal; rerun {took:.1f} s",
    )  # fmt: skip
    scenario.explanation = (
        "During a graceful shutdown that would wait up to 30 s for a 60 s job, a second "
        f"signal (SIGINT) made the process exit with status {code} after {exited:.2f} s. The "
        "job was cut off and ran again on the next runner (stalled path), recorded once."
    )
    assert code == 130
    assert exited < 1.0
    assert exec_log.dup_executed() == 1 and dup_rows(rows) == 0
