"""``bullworker doctor``'s findings (`Check`) and its checks of the recorders.

Per queue of the app: is there a recorder leader, does it keep up (the lag),
and did finished jobs leave Redis before they were recorded (the lost count).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from bullworker.app import App
from bullworker.core import keys
from bullworker.history.backlog import read_lost, recording_lag
from bullworker.ops.inspect import app_queues, iso, read_leader

Level = Literal["OK", "WARN", "FAIL"]

#: Recording lag (seconds) above which the recorder looks stuck.
LAG_WARNING = 300.0


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``level`` OK, WARN or FAIL, and for the latter two a ``fix``."""

    name: str
    level: Level
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "level": self.level, "message": self.message, "fix": self.fix}


async def recorder_checks(client: aioredis.Redis, app: App) -> list[Check]:
    """Each queue's recorder leader and lag, then its lost jobs (WARN if any)."""
    config = app.config
    if not config.record_jobs:
        fix = (
            "unset RECORD_JOBS, or remove finished jobs another way (removeOnComplete/removeOnFail)"
        )
        return [Check("recorder", "WARN", "RECORD_JOBS=false: finished jobs stay in Redis", fix)]
    checks = []
    for queue in app_queues(app):
        async with asyncio.timeout(config.redis_timeout):
            leader = await read_leader(client, config.bull_prefix, queue)
            lag = await recording_lag(client, config.bull_prefix, queue)
        if leader is None:
            message = f"queue {queue}: no recorder leader, so finished jobs stay in Redis (lag {lag:.0f} s)"
            checks.append(
                Check("recorder", "WARN", message, "start a runner: bullworker start --app ...")
            )
        elif lag > LAG_WARNING:
            message = f"queue {queue}: leader {leader.describe()}, but the oldest finished job waits {lag:.0f} s"
            checks.append(
                Check(
                    "recorder",
                    "WARN",
                    message,
                    "look at the leader's log: is the database reachable?",
                )
            )
        else:
            checks.append(
                Check(
                    "recorder", "OK", f"queue {queue}: leader {leader.describe()}, lag {lag:.1f} s"
                )
            )
    for queue in app_queues(app):
        async with asyncio.timeout(config.redis_timeout):
            lost = await read_lost(client, config.bull_prefix, queue)
        if lost.total:
            message = (
                f"queue {queue}: {lost.total} finished job(s) ({lost.completed} completed, "
                f"{lost.failed} failed) left Redis before they were recorded, so _jobs has no "
                f"row of them; the last: job {lost.last_job}, {lost.last_status}, counted "
                f"{iso(lost.last_at)}"
            )
            fix = (
                "their producer sets removeOnComplete/removeOnFail (or another client removes "
                "finished jobs): leave it unset on recorded queues, the recorder removes them once "
                "recorded (KEEP_COMPLETED, KEEP_FAILED, KEEP_AGE); then reset the count: "
                f"redis-cli DEL {keys.lost_key(config.bull_prefix, queue)}"
            )
            checks.append(Check("lost jobs", "WARN", message, fix))
    return checks
