"""``bullworker queues``: BullMQ's queue control, as a Node BullMQ user has it.

This module lists the queues with their counts and whether each is paused, and
pauses and resumes one (BullMQ's own state: Node workers honour it too).
Removing jobs in bulk (drain, clean, obliterate) is in `bullworker.ops.purge`,
one job at a time (promote, remove) in `bullworker.ops.queue_jobs`; all of
them name their queue through `QueueTarget`, so a queue that is neither one of
the app's nor in Redis is an `OpsError` that lists the queues there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis.asyncio as aioredis

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.tasks import within
from bullworker.ops.finished import is_recorded
from bullworker.ops.inspect import OpsError, app_queues, queue_in_redis
from bullworker.transport.bullmq_compat.node_versions import pause_queue
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded, no_answer
from bullworker.transport.probe import reachable_client

#: The states `list_queues` counts, as BullMQ's ``getJobCounts`` names them.
COUNTED = ("waiting", "prioritized", "active", "delayed", "waiting-children", "completed", "failed")
#: Jobs BullMQ's Lua removes per call (obliterate); a long call gets REDIS_TIMEOUT per batch.
_PER_CALL = 1000


def _glob(text: str) -> str:
    """``text`` with the glob characters of a Redis MATCH pattern escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def queues_in_redis(client: aioredis.Redis, prefix: str) -> list[str]:
    """The queues with keys under ``prefix``: each used queue has a ``meta`` hash."""
    pattern = keys.queue_key(_glob(prefix), "*", "meta")
    start, end = len(prefix) + 1, -len(":meta")
    found = {
        str(key)[start:end] async for key in client.scan_iter(match=pattern, count=10_000)
    }  # fmt: skip
    return sorted(name for name in found if name and ":" not in name)


class QueueTarget:
    """One queue of a command: bullworker's client and a bullmq Queue on it, checked to exist.

    ``async with QueueTarget(app, name) as target:``; OpsError if the queue is unknown.
    """

    def __init__(self, app: App, name: str, *, check: bool = True) -> None:
        self.app = app
        self.config = app.config
        self.name = name
        self._check = check
        self.client: Any = None
        self.bull: Any = None

    async def __aenter__(self) -> QueueTarget:
        if not self.name:
            raise OpsError("a queue name is required")
        self.client = await reachable_client(self.config.redis_settings("bull"))
        self.bull = open_queue(self.config, self.name)
        try:
            if self._check:
                await self.check()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.client.aclose()
        finally:
            await close_queue(self.bull, self.config.redis_timeout)

    async def call(self, what: str, awaitable: Any, *, jobs: int = 0) -> Any:
        """``awaitable`` within REDIS_TIMEOUT (once more per 1000 ``jobs`` it works through)."""
        seconds = self.config.redis_timeout * (1 + jobs // _PER_CALL)
        try:
            return await within(awaitable, seconds)
        except (TimeoutError, OSError, aioredis.ConnectionError, aioredis.TimeoutError) as exc:
            raise no_answer(
                self.config, f"{what} of queue {self.name}", type(exc).__name__
            ) from None

    async def check(self) -> None:
        """OpsError, listing the queues there are, unless the app has the queue or Redis does."""
        if self.name in app_queues(self.app):
            return
        if await queue_in_redis(self.client, self.config, self.name):
            return
        there = await self.call("list the queues", known_queues(self.app, self.client))
        raise OpsError(
            f"no queue {self.name!r}: none of the app's jobs uses it and Redis has no keys of it "
            f"under BULL_PREFIX {self.config.bull_prefix!r}; the queues are: {', '.join(there)}"
        )

    async def counts(self, *states: str) -> dict[str, int]:
        """Jobs per state of ``states`` (default `COUNTED`), in that order."""
        states = states or COUNTED
        counts = await self.call("count the jobs", self.bull.getJobCounts(*states))
        return {state: int(counts.get(state) or 0) for state in states}

    async def paused(self) -> bool:
        return bool(await self.call("read the paused state", self.bull.isPaused()))

    async def recorded(self) -> bool:
        return await is_recorded(self.app, self.client, self.name)


async def known_queues(app: App, client: aioredis.Redis) -> list[str]:
    """The app's queues and every queue found in Redis under ``BULL_PREFIX``, sorted."""
    return sorted(set(app_queues(app)) | set(await queues_in_redis(client, app.config.bull_prefix)))


# --------------------------------------------------------------------------- list


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue: its job counts per BullMQ state and whether it is paused."""

    queue: str
    paused: bool
    #: Counts per state of `COUNTED` (a paused queue's jobs count as ``waiting``).
    counts: dict[str, int]
    #: One of the app's queues (else only found in Redis).
    of_app: bool

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "paused": self.paused,
            "app": self.of_app,
            "counts": dict(self.counts),
            "total": self.total,
        }


async def list_queues(app: App) -> list[QueueInfo]:
    """Every queue of the app and in Redis (`known_queues`), with live counts."""
    client = await reachable_client(app.config.redis_settings("bull"))
    try:
        names = await bounded(app.config, "list the queues", known_queues(app, client))
    finally:
        await client.aclose()
    return [await queue_info(app, name, check=False) for name in names]


async def queue_info(app: App, name: str, *, check: bool = True) -> QueueInfo:
    """One queue's `QueueInfo`; OpsError if there is no such queue (with ``check``)."""
    async with QueueTarget(app, name, check=check) as target:
        return QueueInfo(
            queue=name,
            paused=await target.paused(),
            counts=await target.counts(),
            of_app=name in app_queues(app),
        )


# --------------------------------------------------------------------------- pause


@dataclass(frozen=True, slots=True)
class PauseOutcome:
    """The queue's paused state after ``pause``/``resume``; ``changed`` if it was not so."""

    queue: str
    paused: bool
    changed: bool
    #: Jobs waiting (and prioritized) in it: they wait while it is paused, start once resumed.
    waiting: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "paused": self.paused,
            "changed": self.changed,
            "waiting": self.waiting,
        }

    def describe(self) -> str:
        if self.paused:
            head = f"queue {self.queue} " + ("paused" if self.changed else "was paused already")
            return f"{head}: no worker (bullworker or Node) starts its jobs; {self.waiting} waiting"
        if not self.changed:
            return f"queue {self.queue} was not paused; {self.waiting} waiting"
        return f"queue {self.queue} resumed: its {self.waiting} waiting job(s) can start now"


async def set_paused(app: App, name: str, paused: bool) -> PauseOutcome:
    """Pause (``paused``) or resume the queue with BullMQ's own pause, seen by every worker.

    Running jobs go on; a paused queue still takes new jobs, which wait. Resuming
    wakes the workers waiting on the queue at once.
    """
    async with QueueTarget(app, name) as target:
        was = await target.paused()
        counts = await target.counts("waiting", "prioritized")  # before: they start once resumed
        if was != paused:
            change = pause_queue(target.bull, paused)  # as Node BullMQ 5.x expects it too
            await target.call("pause" if paused else "resume", change)
    return PauseOutcome(
        queue=name, paused=paused, changed=was != paused, waiting=sum(counts.values())
    )
