"""Cron: job schedulers installed by runners, fired once per tick, shared with Node.

The Node tests need ``npm ci --prefix tests/node`` (they fail, never skip, without it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from bullworker import (
    AppConfig,
    BaseJob,
    ConfigError,
    JobRegistry,
    Runner,
    create_app,
    keys,
    worker_job,
)
from bullworker.cron import CronService, next_fire_times
from bullworker.store import JobRecord, open_store
from tests.helpers import bull_queue, eventually
from tests.integration import cron_app

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
APP = "tests.integration.cron_app:app"

# Version 1 of an app's cron jobs, and version 2 with one pattern changed.
v1 = JobRegistry()
v2 = JobRegistry()


@worker_job(registry=v1, name="Report")
class ReportV1(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-q"
    CRON_SCHEDULE = "0 3 * * *"
    CRON_TZ = "America/New_York"
    CRON_DATA = {"kind": "daily"}  # noqa: RUF012
    JOB_OPTIONS = {"attempts": 3, "backoff": {"type": "fixed", "delay": 1000}}  # noqa: RUF012

    async def handle(self, data: dict[str, Any]) -> None: ...


@worker_job(registry=v2, name="Report")
class ReportV2(ReportV1):
    CRON_SCHEDULE = "0 4 * * *"


@worker_job(registry=v1, name="Plain")
@worker_job(registry=v2, name="Plain")
class Plain(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-q"
    CRON_SCHEDULE = "*/10 * * * *"  # in the configured CRON_TZ

    async def handle(self, data: dict[str, Any]) -> None: ...


@worker_job(registry=v1, name="NotCron")
class NotCron(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-q"

    async def handle(self, data: dict[str, Any]) -> None: ...


@worker_job(registry=v1, name="Moved")
class Moved(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-elsewhere"
    CRON_SCHEDULE = "0 0 * * *"

    async def handle(self, data: dict[str, Any]) -> None: ...


def config_for(prefix: str, **settings: Any) -> AppConfig:
    settings.setdefault("record_jobs", False)  # finished jobs stay in Redis for inspection
    return AppConfig(environ={}, bull_prefix=prefix, app_env="production", **settings)


def tick_of(job_id: str) -> int:
    """The scheduled time (ms) of a scheduler's job: ``repeat:<scheduler id>:<millis>``."""
    assert job_id.startswith("repeat:"), job_id
    return int(job_id.rsplit(":", 1)[1])


async def schedulers(queue: Any) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in await queue.getJobSchedulers()}


async def finished_runs(queue: Any, name: str) -> list[Any]:
    """Completed jobs of ``name``, oldest tick first; fails if any run failed."""
    failed = [j for j in await queue.getJobs(["failed"]) if j.name == name]
    assert failed == [], [j.failedReason for j in failed]
    jobs = [j for j in await queue.getJobs(["completed"]) if j.name == name]
    return sorted(jobs, key=lambda j: tick_of(j.id))


def lateness(jobs: list[Any]) -> list[int]:
    """processedOn - scheduled tick, in ms."""
    return [int(j.processedOn) - tick_of(j.id) for j in jobs]


def report(label: str, late: list[int]) -> None:
    print(
        f"\n{label}: {len(late)} fires, late by median {statistics.median(late):.0f} ms, "
        f"max {max(late)} ms: {late}"
    )


@contextlib.asynccontextmanager
async def running(prefix: str, registry: JobRegistry, **settings: Any) -> AsyncIterator[Runner]:
    app = create_app(config=config_for(prefix, **settings), enable_worker=True, registry=registry)
    runner = app.create_runner()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace=5)
        await app.stop()


# --- installing and reconciling -------------------------------------------------------


async def test_runner_installs_one_scheduler_per_cron_job(prefix: str) -> None:
    async with running(prefix, v1, cron_tz="Asia/Kolkata"):
        pass
    async with bull_queue("cron-q", prefix) as queue:
        found = await schedulers(queue)
        assert sorted(found) == ["bw:cron:Plain", "bw:cron:Report"]
        daily = found["bw:cron:Report"]
        assert (daily["name"], daily["pattern"], daily["tz"]) == (
            "Report", "0 3 * * *", "America/New_York",
        )  # fmt: skip
        assert daily["template"] == {
            "data": {"kind": "daily"},
            "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": 1000}},
        }
        [expected] = next_fire_times("0 3 * * *", "America/New_York", 1)
        assert daily["next"] == int(expected.timestamp() * 1000)
        pending = await queue.getJob(f"repeat:bw:cron:Report:{daily['next']}")
        assert await pending.getState() == "delayed"
        assert (pending.name, pending.data) == ("Report", {"kind": "daily"})

        plain = found["bw:cron:Plain"]
        assert (plain["tz"], plain.get("template")) == ("Asia/Kolkata", None)  # payload {}
        plain_job = await queue.getJob(f"repeat:bw:cron:Plain:{plain['next']}")
        assert plain_job.data == {}
    async with bull_queue("cron-elsewhere", prefix) as queue:
        assert list(await schedulers(queue)) == ["bw:cron:Moved"]


async def test_a_changed_pattern_replaces_the_schedule_and_a_same_one_is_left_alone(
    prefix: str, redis_client: aioredis.Redis
) -> None:
    config = config_for(prefix)
    await CronService(config, v1, ["cron-q"]).start()
    async with bull_queue("cron-q", prefix) as queue:
        before = await queue.getJobs(["delayed"])
        await asyncio.sleep(0.05)
        await CronService(config, v1, ["cron-q"]).start()  # a second runner, same code
        again = await queue.getJobs(["delayed"])
        assert {(j.id, j.timestamp) for j in again} == {(j.id, j.timestamp) for j in before}

        await CronService(config, v2, ["cron-q"]).start()  # new code: Report at 04:00
        found = await schedulers(queue)
        assert sorted(found) == ["bw:cron:Plain", "bw:cron:Report"]
        assert found["bw:cron:Report"]["pattern"] == "0 4 * * *"
        [expected] = next_fire_times("0 4 * * *", "America/New_York", 1)
        assert found["bw:cron:Report"]["next"] == int(expected.timestamp() * 1000)
        delayed = sorted(j.id for j in await queue.getJobs(["delayed"]))
        assert delayed == sorted(f"repeat:{key}:{record['next']}" for key, record in found.items())
        plain = [j for j in again if j.name == "Plain"]
        assert [
            (j.id, j.timestamp) for j in await queue.getJobs(["delayed"]) if j.name == "Plain"
        ] == [(j.id, j.timestamp) for j in plain]

        [lost] = plain  # the pending run is lost (BullMQ refuses to remove it): a start repairs it
        assert await redis_client.zrem(keys.queue_key(prefix, "cron-q", "delayed"), lost.id) == 1
        assert await redis_client.delete(keys.job_key(prefix, "cron-q", lost.id)) == 1
        assert await queue.getJobState(lost.id) == "unknown"
        await CronService(config, v2, ["cron-q"]).start()
        assert [j.name for j in await queue.getJobs(["delayed"]) if j.name == "Plain"] == ["Plain"]


async def test_only_stale_schedulers_made_by_bullworker_are_removed(prefix: str) -> None:
    tmpl = {"pattern": "0 0 * * *", "tz": "UTC"}
    async with (
        bull_queue("cron-q", prefix) as queue,
        bull_queue("cron-unconsumed", prefix) as unconsumed,
        bull_queue("cron-elsewhere", prefix) as elsewhere,
    ):
        await queue.upsertJobScheduler(keys.scheduler_id("Gone"), tmpl, "Gone")
        await queue.upsertJobScheduler(keys.scheduler_id("NotCron"), tmpl, "NotCron")
        await queue.upsertJobScheduler(keys.scheduler_id("Moved"), tmpl, "Moved")
        await queue.upsertJobScheduler("nightly-report", tmpl, "NotCron")
        await queue.upsertJobScheduler("bw:cronjob", tmpl, "NotCron")
        await unconsumed.upsertJobScheduler(keys.scheduler_id("Gone"), tmpl, "Gone")

        await CronService(config_for(prefix), v1, ["cron-q", "cron-elsewhere"]).start()

        assert sorted(await schedulers(queue)) == [
            "bw:cron:Plain", "bw:cron:Report", "bw:cronjob", "nightly-report",
        ]  # fmt: skip
        names = sorted(j.name for j in await queue.getJobs(["delayed"]))
        assert names == ["NotCron", "NotCron", "Plain", "Report"]  # removed with their schedulers
        assert list(await schedulers(unconsumed)) == ["bw:cron:Gone"]
        assert list(await schedulers(elsewhere)) == ["bw:cron:Moved"]


async def test_a_bad_cron_timezone_stops_the_runner_with_a_clear_error(prefix: str) -> None:
    app = create_app(
        config=config_for(prefix, cron_tz="Mars/Olympus"), enable_worker=True, registry=v1
    )
    runner = app.create_runner()
    with pytest.raises(ConfigError, match="CRON_TZ 'Mars/Olympus' is not a known timezone"):
        await runner.start()
    assert not runner.running and runner.workers == {}
    await app.stop()


async def test_redis_trouble_during_install_is_logged_not_raised(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(prefix, redis_port=1, redis_timeout=0.5)
    started = time.monotonic()
    await CronService(config, v1, ["cron-q"]).start()
    assert time.monotonic() - started < 5
    assert "could not update the schedules of queue cron-q" in caplog.text


# --- firing --------------------------------------------------------------------------


async def test_python_worker_fires_each_tick_on_time(prefix: str) -> None:
    async with running(prefix, cron_app.registry):
        await asyncio.sleep(4.6)
    async with bull_queue("default", prefix) as queue:
        jobs = await finished_runs(queue, "CronTick")
    ticks = [tick_of(j.id) for j in jobs]
    assert len(ticks) >= 3, ticks
    assert all(t % 1000 == 0 for t in ticks)
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1)
    late = lateness(jobs)
    report("Python worker, * * * * * *", late)
    assert all(ms >= 0 for ms in late)
    # Primed (runner.start) it is tens of ms; an unprimed worker is 190-1090 ms late.
    assert statistics.median(late) < 150


def subprocess_env(prefix: str, **settings: str) -> dict[str, str]:
    ours = {name.upper() for name in AppConfig.settings()} | {"BULLWORKER_APP"}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(BULL_PREFIX=prefix, APP_ENV="production", RECORD_JOBS="false", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


@contextlib.contextmanager
def runner_processes(
    prefix: str, count: int, logs: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = []
    try:
        for i in range(count):
            with open(logs / f"runner-{i}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bullworker", "start", "--app", APP],
                        cwd=ROOT,
                        env=subprocess_env(prefix),
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


async def test_three_runner_processes_fire_each_tick_exactly_once(
    prefix: str, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    logs = [tmp_path / f"runner-{i}.log" for i in range(3)]
    with runner_processes(prefix, 3, tmp_path) as procs:
        await eventually(lambda: all("runner started" in p.read_text() for p in logs), 20)
        window_start = time.time()
        await asyncio.sleep(6.2)
        window_end = time.time()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert await asyncio.to_thread(proc.wait, 15) == 0
    async with bull_queue("default", prefix) as queue:
        jobs = await finished_runs(queue, "CronTick")
    runs = [json.loads(r) for r in await redis_client.lrange(cron_app.runs_key(prefix), 0, -1)]
    ticks = [tick_of(j.id) for j in jobs]
    assert len(runs) == len(ticks) == len(set(ticks)), ("a tick ran more than once", runs, ticks)
    # Every whole second while all three ran fired; allow one missed at the edges.
    expected = set(range(int(window_start) + 1, int(window_end)))
    fired = {t // 1000 for t in ticks}
    missed = sorted(expected - fired)
    assert len(expected) >= 5 and len(missed) <= 1, (missed, sorted(fired))
    per_pid = {pid: sum(r["pid"] == pid for r in runs) for pid in {r["pid"] for r in runs}}
    late = lateness(jobs)
    report(f"3 runner processes (runs per pid {sorted(per_pid.values())})", late)
    assert statistics.median(late) < 400


# --- Node interop ----------------------------------------------------------------------


async def run_node(script: str, prefix: str, queue: str, spec: dict[str, Any]) -> Any:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the cron interop tests need Node.js 20+")
    if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        pytest.fail("run `npm ci --prefix tests/node` first", pytrace=False)
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "PREFIX": prefix, "QUEUE": queue}
    proc = await asyncio.create_subprocess_exec(
        node, script, json.dumps(spec), cwd=NODE_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"node {script}: {out.decode()} {err.decode()}"
    return json.loads(out.decode().strip().splitlines()[-1])


DST_PATTERNS = [
    "0 0 * * * *", "0 30 * * * *", "0 */20 * * * *", "0 */7 * * * *", "0 0 */2 * * *",
    "0 0 1-3 * * *", "0 15 2 * * *", "0 30 2 * * *", "0 0 3 * * *", "0 45 1 * * *",
    "0 0 0-23 * * *", "30 59 * * * *", "0 0 0 * * *", "0 30 2 * * 0", "0 0 2,3 * * *",
    "*/15 * 2 * * *",
]  # fmt: skip
#: A moment a few hours before each DST change of 2026 (spring, then autumn).
DST_EVES = {
    "Europe/Stockholm": ["2026-03-28T22:00:00Z", "2026-10-24T22:00:00Z"],
    "America/New_York": ["2026-03-08T03:00:00Z", "2026-11-01T02:00:00Z"],
    "Australia/Sydney": ["2026-10-03T12:00:00Z", "2026-04-04T12:00:00Z"],
}


def test_fire_times_match_node_cron_parser_around_dst() -> None:
    # Skipped and repeated hours, hourly and sub-hourly patterns, both hemispheres:
    # 12 fire times per case from bullworker and from Node's cron-parser must be equal.
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the cron interop tests need Node.js 20+")
    cases = [
        {"pattern": pattern, "tz": tz, "after": after, "count": 12}
        for pattern in DST_PATTERNS
        for tz, eves in DST_EVES.items()
        for after in eves
    ]
    out = subprocess.run(
        [node, "cron_times.mjs", json.dumps(cases)],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    expected = json.loads(out)
    differ = []
    for case, node_times in zip(cases, expected, strict=True):
        after = datetime.fromisoformat(case["after"])
        runs = next_fire_times(case["pattern"], case["tz"], case["count"], after=after)
        ours = [t.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z" for t in runs]
        if ours != node_times:
            differ.append((case, ours, node_times))
    assert len(cases) == 96 and differ == []


py_side = JobRegistry()


@worker_job(registry=py_side)
class EveryTwo(BaseJob[dict[str, Any], None]):
    QUEUE_NAME = "cron-node"
    CRON_SCHEDULE = "*/2 * * * * *"  # seconds first: even seconds only
    CRON_TZ = "Asia/Kolkata"
    CRON_DATA = {"from": "python"}  # noqa: RUF012

    async def handle(self, data: dict[str, Any]) -> None: ...


@worker_job(registry=py_side)
class NodeTick(BaseJob[dict[str, Any], dict[str, Any]]):
    """Scheduled by Node, run by Python."""

    QUEUE_NAME = "cron-node"

    async def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"by": "python", "got": data}


def assert_two_second_grid(ticks: list[int]) -> None:
    assert len(ticks) >= 3, ticks
    assert all(t % 2000 == 0 for t in ticks), ticks  # even seconds: read seconds first
    assert [b - a for a, b in itertools.pairwise(ticks)] == [2000] * (len(ticks) - 1)


@pytest.mark.node
async def test_node_worker_advances_a_schedule_python_created(prefix: str) -> None:
    py_only = JobRegistry()
    py_only.register(EveryTwo)
    await CronService(config_for(prefix), py_only, ["cron-node"]).start()
    result = await run_node("cron_worker.mjs", prefix, "cron-node", {"durationMs": 7000})
    assert result["failed"] == []
    jobs = result["jobs"]
    assert {(j["name"], j["repeatJobKey"]) for j in jobs} == {("EveryTwo", "bw:cron:EveryTwo")}
    assert all(j["data"] == {"from": "python"} for j in jobs)
    ticks = [tick_of(j["id"]) for j in jobs]
    assert_two_second_grid(ticks)
    late = [j["processedOn"] - tick_of(j["id"]) for j in jobs]
    report("Python schedule, Node worker, */2 * * * * *", late)
    assert statistics.median(late) < 400
    async with bull_queue("cron-node", prefix) as queue:
        record = await queue.getJobScheduler("bw:cron:EveryTwo")
    assert record["next"] == ticks[-1] + 2000  # Node computed the same next tick


@pytest.mark.node
async def test_python_worker_advances_a_schedule_node_created(prefix: str) -> None:
    far = [
        ("node-daily", "0 30 9 * * *", "Europe/Stockholm"),
        ("node-weekly", "15 10 * * 1", "America/New_York"),
        ("node-monthly", "0 0 0 1 * *", "Australia/Adelaide"),
    ]
    spec = {
        "schedulers": [
            {"id": "node-every-2", "pattern": "*/2 * * * * *", "tz": "America/New_York",
             "name": "NodeTick", "data": {"from": "node"}},
            *({"id": i, "pattern": p, "tz": tz, "name": "NodeTick"} for i, p, tz in far),
        ]
    }  # fmt: skip
    stored = (await run_node("cron_upsert.mjs", prefix, "cron-node", spec))["schedulers"]
    for (_, pattern, tz), record in zip(far, stored[1:], strict=True):
        [python_next] = next_fire_times(pattern, tz, 1)
        assert record["next"] == int(python_next.timestamp() * 1000), (pattern, tz)
    nodetick_only = JobRegistry()
    nodetick_only.register(NodeTick)
    async with running(prefix, nodetick_only):
        await asyncio.sleep(6.5)
    async with bull_queue("cron-node", prefix) as queue:
        jobs = await finished_runs(queue, "NodeTick")
        left = await schedulers(queue)
    assert sorted(left) == sorted(["node-every-2", *(i for i, _, _ in far)])  # not ours: kept
    assert all(j.data == {"from": "node"} and j.repeatJobKey == "node-every-2" for j in jobs)
    ticks = [tick_of(j.id) for j in jobs]
    assert_two_second_grid(ticks)
    late = lateness(jobs)
    report("Node schedule, Python worker, */2 * * * * *", late)
    assert statistics.median(late) < 400
    assert left["node-every-2"]["next"] == ticks[-1] + 2000  # Python computed the same next


# --- the schedules command ---------------------------------------------------------------


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    name = f"bwtest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


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
                    queue="default", queue_id="repeat:bw:cron:CronTick:1", attempt=1,
                    name="CronTick", data={}, status="completed", result=1,
                    created_at=last - timedelta(seconds=1), should_execute_at=last,
                    executed_at=last, completed_at=last,
                )
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
    assert tick["last_run_error"] is None

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
