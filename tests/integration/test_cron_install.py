"""Cron: runners install, replace and remove job schedulers, against real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullworker import BaseJob, ConfigError, JobRegistry, create_app, worker_job
from bullworker.core import keys
from bullworker.core.cron import next_fire_times
from bullworker.runtime.cron import CronService
from tests.helpers import bull_queue
from tests.integration.cron_support import config_for, running, schedulers

pytestmark = pytest.mark.timeout(60)


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
    config = config_for(prefix, redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5)
    started = time.monotonic()
    await CronService(config, v1, ["cron-q"]).start()
    assert time.monotonic() - started < 5
    assert "could not update the schedules of queue cron-q" in caplog.text
