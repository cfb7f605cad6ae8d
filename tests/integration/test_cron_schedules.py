"""Cron: the ``bullworker schedules`` command (next runs, Redis state, last run)."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from bullworker.history.store import JobRecord, open_store
from bullworker.runtime.cron import CronService
from tests.integration import cron_app
from tests.integration.cron_support import APP, ROOT, config_for, subprocess_env

pytestmark = pytest.mark.timeout(60)


# --- the schedules command ---------------------------------------------------------------


def bullworker(prefix: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT,
        env=subprocess_env(prefix, **settings),
        capture_output=True,
        text=True,
        timeout=30,
    )


async def test_schedules_command_shows_next_runs_redis_state_and_last_run(
    prefix: str, pg_dsn: str, pg_schema: str
) -> None:
    last = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with open_store(pg_dsn, pg_schema=pg_schema) as store:
        await store.insert_records(
            [
                JobRecord(
                    queue="default", queue_id="repeat:bw:cron:CronTick:0", attempt=1,
                    name="CronTick", data={}, status="completed", result=1,
                    created_at=last - timedelta(days=1, seconds=1),
                    should_execute_at=last - timedelta(days=1),
                    executed_at=last - timedelta(days=1), completed_at=last - timedelta(days=1),
                ),
                JobRecord(  # the newest run failed: LAST RUN must say so
                    queue="default", queue_id="repeat:bw:cron:CronTick:1", attempt=1,
                    name="CronTick", data={}, status="failed",
                    result={"reason": "RuntimeError: disk full", "stack": []},
                    created_at=last - timedelta(seconds=1), should_execute_at=last,
                    executed_at=last, completed_at=last,
                ),
            ]
        )  # fmt: skip
    config = config_for(prefix)
    await CronService(config, cron_app.registry, ["default"]).start()  # CronTick only

    result = await asyncio.to_thread(
        bullworker, prefix, "schedules", "--app", APP, "--json",
        DATABASE_URL=pg_dsn, DATABASE_SCHEMA=pg_schema,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    nightly, tick = json.loads(result.stdout)
    assert (nightly["job"], nightly["queue"], nightly["pattern"], nightly["timezone"]) == (
        "CronNightly", "cron-other", "0 30 9 * * *", "Europe/Stockholm",
    )  # fmt: skip
    runs = [datetime.fromisoformat(t) for t in nightly["next"]]
    assert [(t.hour, t.minute, t.second) for t in runs] == [(9, 30, 0)] * 3
    assert [(b.date() - a.date()).days for a, b in itertools.pairwise(runs)] == [1, 1]
    assert nightly["in_sync"] is None
    assert (nightly["installed"], nightly["installed_next"], nightly["last_run"]) == (
        False, None, None,
    )  # fmt: skip
    assert (tick["job"], tick["timezone"], tick["installed"], tick["in_sync"]) == (
        "CronTick", "UTC", True, True,
    )  # fmt: skip
    seconds = [datetime.fromisoformat(t) for t in tick["next"]]
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(seconds)] == [1, 1]
    installed_next = datetime.fromisoformat(tick["installed_next"])
    assert abs((installed_next - datetime.now(UTC)).total_seconds()) < 5
    assert datetime.fromisoformat(tick["last_run"]) == last
    assert (tick["last_run_status"], tick["last_run_reason"]) == (
        "failed", "RuntimeError: disk full",
    )  # fmt: skip
    assert tick["last_run_error"] is None
    listed = await asyncio.to_thread(
        bullworker, prefix, "schedules", "--app", APP,
        DATABASE_URL=pg_dsn, DATABASE_SCHEMA=pg_schema,
    )  # fmt: skip
    assert listed.stdout.splitlines()[2].endswith("2026-01-02 03:04:05 failed")

    table = await asyncio.to_thread(
        bullworker, prefix, "schedules", "--app", APP,
        DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere",
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "JOB",
        "QUEUE",
        "PATTERN",
        "TZ",
        "NEXT",
        "RUNS",
        "IN",
        "REDIS",
        "LAST",
        "RUN",
    ]
    assert rows[0].startswith("CronNightly") and " no " in rows[0] and rows[0].endswith("?")
    assert rows[1].startswith("CronTick") and rows[1].endswith("?")
    assert "(outdated)" not in rows[1]
