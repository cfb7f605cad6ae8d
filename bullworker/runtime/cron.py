"""Cron schedules: the runner service that installs them as BullMQ job schedulers.

Each job class with ``CRON_SCHEDULE`` becomes one BullMQ job scheduler with the
id ``bw:cron:<job name>``, upserted by every runner when it starts. No leader is
needed: BullMQ keeps the next run time in Redis and names each run's job
``repeat:<id>:<millis>``, so however many runners upsert the scheduler or
compete for its jobs, a tick becomes exactly one job.

At start a runner also removes ``bw:cron:`` schedulers, on the queues it
consumes, whose job it does not know, whose class has no ``CRON_SCHEDULE`` any
more, or whose class now runs on another queue. Other schedulers are never
touched. Limitation in rolling deploys: an *old* runner that (re)starts while
newer ones run removes the schedulers of classes it does not know and puts back
its own version of a changed schedule; the newer runners restore theirs when
they next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.core.cron import next_fire_times, zone_named
from bullworker.core.errors import ConfigError, JobDefinitionError, PayloadError
from bullworker.core.jobs import JobDefinition, JobRegistry
from bullworker.core.tasks import within
from bullworker.transport import bullmq_compat
from bullworker.transport.bullmq_compat import get_scheduler
from bullworker.transport.connection import close_queue, open_queue

log = logging.getLogger("bullworker.cron")

T = TypeVar("T")

#: Options the scheduler sets on every run itself.
_SCHEDULER_OWNED = ("jobId", "delay", "repeat")
#: States in which a scheduler's next job can still run.
_DEAD_STATES = ("unknown", "completed", "failed")
#: Seconds between a runner's checks that its schedules are still in Redis.
CHECK_INTERVAL = 60.0


def repeat_strategy(millis: int, opts: dict[str, Any]) -> int | None:
    """bullmq's ``repeat_strategy`` hook, DST-safe (see :func:`next_fire_times`)."""
    pattern = opts.get("pattern")
    if not pattern or opts.get("immediately") or opts.get("startDate"):
        return bullmq_compat.default_repeat_strategy(millis, opts)
    after = datetime.fromtimestamp(millis / 1000, UTC)
    [when] = next_fire_times(pattern, opts.get("tz") or "UTC", 1, after=after)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class CronSpec:
    """The job scheduler one cron job class asks for."""

    job_name: str
    queue: str
    pattern: str
    tz: str
    data: Any
    opts: dict[str, Any]

    @property
    def scheduler_id(self) -> str:
        return keys.scheduler_id(self.job_name)


def cron_specs(registry: JobRegistry, config: AppConfig) -> list[CronSpec]:
    """The schedules of the registry's cron jobs; bad timezone, data or options raise."""
    try:  # checked even when every class sets its own
        zone_named(config.cron_tz, what="CRON_TZ")
    except JobDefinitionError as exc:
        raise ConfigError(str(exc)) from None
    return [_spec(d, config) for d in registry if d.cls.CRON_SCHEDULE is not None]


def _spec(definition: JobDefinition, config: AppConfig) -> CronSpec:
    from bullworker.core.options import check_options

    cls, name = definition.cls, definition.name
    pattern = cls.CRON_SCHEDULE
    assert pattern is not None
    tz = cls.CRON_TZ or config.cron_tz  # both checked already
    try:
        data = definition.to_wire(cls.CRON_DATA)
    except PayloadError as exc:
        raise JobDefinitionError(f"{name}.CRON_DATA does not fit the job: {exc}") from None
    owned = sorted(set(cls.JOB_OPTIONS) & set(_SCHEDULER_OWNED))
    if owned:
        raise JobDefinitionError(
            f"{name}.JOB_OPTIONS cannot set {', '.join(owned)} on a CRON_SCHEDULE job"
        )
    try:
        opts = check_options(dict(cls.JOB_OPTIONS))
    except PayloadError as exc:
        raise JobDefinitionError(f"{name}.JOB_OPTIONS: {exc}") from None
    return CronSpec(name, definition.queue(config.bull_queue), pattern, tz, data, opts)


def matches(record: dict[str, Any] | None, spec: CronSpec) -> bool:
    """Whether a scheduler read from Redis already is what ``spec`` asks for."""
    if record is None:
        return False
    template = record.get("template") or {}
    return (
        record.get("pattern") == spec.pattern
        and record.get("tz") == spec.tz
        and record.get("name") == spec.job_name
        and record.get("every") is None
        and _canonical(template.get("data", {})) == _canonical(spec.data)
        and _canonical(template.get("opts", {})) == _canonical(spec.opts)
    )


def use_repeat_strategy(owner: Any) -> None:
    """Make a bullmq Queue or Worker compute cron runs with :func:`repeat_strategy`."""
    bullmq_compat.use_repeat_strategy(owner, repeat_strategy)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class CronService:
    """Runner service: installs the schedules of the consumed queues, removes stale ones.

    Every ``check_interval`` seconds it also puts back a schedule that went
    missing from Redis (a flushed or restored Redis, a rolling deploy's older
    runner that removed it), and retries a start that could not reach Redis.
    It only ever re-adds its own schedules where none or a dead one is: a
    schedule that differs is another version's, and changes wait for a start.
    """

    def __init__(
        self,
        config: AppConfig,
        registry: JobRegistry,
        queues: list[str],
        *,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.config = config
        self.registry = registry
        self.queues = list(queues)
        self.check_interval = check_interval
        self._specs: list[CronSpec] = []
        self._synced: set[str] = set()  # queues whose schedules were brought up to date
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Upsert and reconcile; bad config raises, Redis trouble is logged."""
        self._specs = [s for s in cron_specs(self.registry, self.config) if s.queue in self.queues]
        for queue in self.queues:
            try:
                await self._sync(queue, self._wanted(queue))
                self._synced.add(queue)
            except Exception as exc:
                log.error(
                    "cron: could not update the schedules of queue %s (%s: %s); "
                    "trying again every %g s",
                    queue, type(exc).__name__, str(exc) or "no answer", self.check_interval,
                )  # fmt: skip
        if self._specs or len(self._synced) < len(self.queues):
            self._task = asyncio.create_task(self._watch(), name="bullworker:cron")

    async def stop(self) -> None:
        """Stop checking; BullMQ itself fires the schedules."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _wanted(self, queue: str) -> list[CronSpec]:
        return [s for s in self._specs if s.queue == queue]

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            for queue in self.queues:
                try:
                    if queue in self._synced:
                        await self._repair(queue, self._wanted(queue))
                    else:
                        await self._sync(queue, self._wanted(queue))
                        self._synced.add(queue)
                        log.info("cron: schedules of queue %s are up to date", queue)
                except Exception as exc:
                    log.warning(
                        "cron: could not check the schedules of queue %s (%s: %s)",
                        queue, type(exc).__name__, str(exc) or "no answer",
                    )  # fmt: skip

    async def _repair(self, name: str, wanted: list[CronSpec]) -> None:
        """Put back the schedules of ``wanted`` that are missing or whose next run is gone."""
        if not wanted:
            return
        queue = open_queue(self.config, name)
        use_repeat_strategy(queue)
        try:
            for spec in wanted:
                record = await self._call(get_scheduler(queue, spec.scheduler_id))
                if record is None or (
                    matches(record, spec) and not await self._alive(queue, spec, record)
                ):
                    log.warning("cron: the schedule of %s was gone from Redis", spec.job_name)
                    await self._install(queue, spec, None)
        finally:
            await close_queue(queue, self.config.redis_timeout)

    async def _call(self, awaitable: Awaitable[T]) -> T:
        return await within(awaitable, self.config.redis_timeout)

    async def _sync(self, name: str, wanted: list[CronSpec]) -> None:
        queue = open_queue(self.config, name)
        use_repeat_strategy(queue)
        try:
            existing = {r["key"]: r for r in await self._call(queue.getJobSchedulers())}
            for spec in wanted:
                await self._install(queue, spec, existing.get(spec.scheduler_id))
            for key in existing:
                reason = self._stale(key, name)
                if reason:
                    await self._call(queue.removeJobScheduler(key))
                    log.info("cron: removed scheduler %s from queue %s: %s", key, name, reason)
        finally:
            await close_queue(queue, self.config.redis_timeout)

    async def _install(self, queue: Any, spec: CronSpec, record: dict[str, Any] | None) -> None:
        if matches(record, spec) and await self._alive(queue, spec, record):
            log.debug("cron: %s is already scheduled on queue %s", spec.job_name, spec.queue)
            return
        # Upserting replaces the pending run; skipping it when nothing changed
        # keeps restarts from touching (or racing) a run that is due.
        for attempt in range(3):
            try:
                await self._call(
                    queue.upsertJobScheduler(
                        spec.scheduler_id,
                        {"pattern": spec.pattern, "tz": spec.tz},
                        spec.job_name,
                        spec.data,
                        spec.opts,
                    )
                )
                break
            except TypeError as exc:  # bullmq's way of reporting a script's error code
                # "job ID already exists": another runner moved the schedule on meanwhile.
                if "already exists" not in str(exc):
                    raise
                if matches(await self._call(get_scheduler(queue, spec.scheduler_id)), spec):
                    return
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5)
        log.info(
            "cron: scheduled %s on queue %s: %r (%s)%s",
            spec.job_name, spec.queue, spec.pattern, spec.tz, " (replaced)" if record else "",
        )  # fmt: skip

    async def _alive(self, queue: Any, spec: CronSpec, record: Any) -> bool:
        """Whether the scheduler's next run exists and can still run."""
        job_id = f"repeat:{spec.scheduler_id}:{record.get('next')}"
        return await self._call(queue.getJobState(job_id)) not in _DEAD_STATES

    def _stale(self, scheduler_id: str, queue: str) -> str | None:
        """Why a scheduler bullworker created on ``queue`` must go, or None."""
        if not scheduler_id.startswith(keys.SCHEDULER_ID_PREFIX):
            return None
        name = scheduler_id[len(keys.SCHEDULER_ID_PREFIX) :]
        definition = self.registry.find(name)
        if definition is None:
            return f"job {name!r} is not registered"
        if definition.cls.CRON_SCHEDULE is None:
            return f"{name} has no CRON_SCHEDULE"
        if definition.queue(self.config.bull_queue) != queue:
            return f"{name} now runs on queue {definition.queue(self.config.bull_queue)}"
        return None
