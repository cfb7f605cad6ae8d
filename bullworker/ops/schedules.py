"""What ``bullworker schedules`` shows: each cron job, its next runs, Redis and history."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from bullworker.core.cron import next_fire_times
from bullworker.core.errors import QueueUnavailable
from bullworker.runtime.cron import CronSpec, cron_specs, matches
from bullworker.transport.bullmq_compat import get_scheduler
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import check_reachable

if TYPE_CHECKING:
    from bullworker.app import App
    from bullworker.history.store import JobRecord

log = logging.getLogger("bullworker.schedules")

#: Seconds the listing waits for the database before showing "?".
STORE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One cron job as the app declares it and as Redis and ``_jobs`` know it."""

    job: str
    queue: str
    pattern: str
    timezone: str
    scheduler_id: str
    next_fires: list[datetime]
    #: Whether the scheduler is in Redis; None when Redis did not answer.
    installed: bool | None = None
    #: Next run time stored in Redis.
    installed_next: datetime | None = None
    #: False when Redis holds another pattern, timezone or template (a runner
    #: with this code has not started yet).
    in_sync: bool | None = None
    last_run: datetime | None = None
    #: ``completed``, ``failed`` or ``cancelled``: how the last recorded run ended.
    last_run_status: str | None = None
    #: The failure reason of the last run, when it failed.
    last_run_reason: str | None = None
    #: Why the last run is unknown (database unreachable...), else None.
    last_run_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; times are ISO 8601 in the schedule's timezone."""
        return {
            "job": self.job,
            "queue": self.queue,
            "pattern": self.pattern,
            "timezone": self.timezone,
            "scheduler_id": self.scheduler_id,
            "next": [t.isoformat() for t in self.next_fires],
            "installed": self.installed,
            "installed_next": _iso(self.installed_next),
            "in_sync": self.in_sync,
            "last_run": _iso(self.last_run),
            "last_run_status": self.last_run_status,
            "last_run_reason": self.last_run_reason,
            "last_run_error": self.last_run_error,
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def describe_schedules(app: App, *, count: int = 3) -> list[ScheduleInfo]:
    """Every cron schedule of ``app``: next ``count`` fire times, Redis state, last run."""
    config = app.config
    specs = sorted(cron_specs(app.registry, config), key=lambda s: (s.queue, s.job_name))
    installed = await _installed(app, specs)
    last_runs, error = await _last_runs(app, specs)
    infos = []
    for spec in specs:
        zone = ZoneInfo(spec.tz)
        known = installed is not None
        record = installed.get(spec.scheduler_id) if installed is not None else None
        next_ms = record.get("next") if record else None
        last = last_runs.get(spec.job_name)
        infos.append(
            ScheduleInfo(
                job=spec.job_name,
                queue=spec.queue,
                pattern=spec.pattern,
                timezone=spec.tz,
                scheduler_id=spec.scheduler_id,
                next_fires=next_fire_times(spec.pattern, zone, count),
                installed=record is not None if known else None,
                installed_next=(
                    datetime.fromtimestamp(int(next_ms) / 1000, zone) if next_ms else None
                ),
                in_sync=matches(record, spec) if record is not None else None,
                last_run=_in_zone(last.completed_at if last else None, zone),
                last_run_status=last.status if last else None,
                last_run_reason=last.reason if last else None,
                last_run_error=error,
            )
        )
    return infos


def _in_zone(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if value is None else value.astimezone(zone)


async def _installed(app: App, specs: list[CronSpec]) -> dict[str, Any] | None:
    """Scheduler records by id (None for absent ones); None if Redis did not answer."""
    config = app.config
    found: dict[str, Any] = {}
    if specs:
        try:
            await check_reachable(config.redis_settings("bull"))
        except QueueUnavailable as exc:
            log.warning("%s", exc)
            return None
    for name in sorted({s.queue for s in specs}):
        queue = open_queue(config, name)
        try:
            for spec in (s for s in specs if s.queue == name):
                found[spec.scheduler_id] = await bounded(
                    config,
                    f"read the job schedulers of queue {name}",
                    get_scheduler(queue, spec.scheduler_id),
                )
        except QueueUnavailable as exc:
            log.warning("%s", exc)
            return None
        except RedisError as exc:  # an error reply (no permission...): Redis did answer
            where = config.redis_settings("bull").describe()
            log.warning("Redis at %s: %s: %s", where, type(exc).__name__, exc)
            return None
        finally:
            await close_queue(queue, config.redis_timeout)
    return found


async def _last_runs(app: App, specs: list[CronSpec]) -> tuple[dict[str, JobRecord], str | None]:
    """The latest ``_jobs`` row per job, or an error text instead."""
    from bullworker.history.store import store_for

    config = app.config
    if not specs:
        return {}, None
    if not config.database_url and not await asyncio.to_thread(os.path.exists, config.sqlite_path):
        return {}, None  # nothing recorded yet; do not create the file
    found: dict[str, JobRecord] = {}
    try:
        store = store_for(config, connect_timeout=STORE_TIMEOUT)
        async with asyncio.timeout(STORE_TIMEOUT * 2):
            async with store:
                for spec in specs:
                    rows = await store.recent(queue=spec.queue, name=spec.job_name, limit=1)
                    if rows:
                        found[spec.job_name] = rows[0]
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        log.warning("last runs unknown: %s", detail)
        return {}, detail
    return found, None
