"""Rate limits as Node BullMQ's worker honours them, for bullmq's Python Worker.

When a queue is rate-limited (a ``limiter`` on its workers, Node's
``queue.setGlobalRateLimit``, or a handler's ``RateLimited``), BullMQ's
``moveToActive`` and fetch-next ``moveToFinished`` return no job and the
limiter's TTL in milliseconds. bullmq's Python worker stores that TTL as if
it were a point in time and blocks ``drainDelay`` (5 s) on the queue's marker
instead, so a queue limited to 10 jobs a second ran 10 jobs every 5 s. Node's
worker sleeps until the limit is over (at most ``maximumRateLimitDelay``, so
that delayed jobs are still promoted) and fetches again; so does this one.

- One sleep per worker, shared by its fetches; while it runs the fetch loop
  starts no other fetch, a fetch that was blocked on the queue's marker takes
  nothing, and a job that finishes meanwhile takes no next one.
- A graceful close or a pause interrupts it at once.
- A global concurrency reached returns no job and no TTL; the worker's own
  jobs take the next one as they finish (fetch-next, also after a failure),
  and a job added or started elsewhere wakes the blocked fetch by its marker.

A handler's :class:`RateLimited` is Node's ``queue.rateLimit(ms)`` followed by
``throw Worker.RateLimitError()``: the queue's limiter key is set to expire in
that time, the job goes back to waiting without spending an attempt (no
``failed`` event, no retry counted) and this worker takes no job until the key
expires. Other workers, Node's too, wait as well when they have a limiter
(BullMQ's ``moveToActive`` reads the key only then).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bullworker.core.errors import RateLimited
from bullworker.transport.bullmq_compat.commands import WorkerCommands

log = logging.getLogger("bullworker.runner")

#: Node's default ``maximumRateLimitDelay`` (ms): the longest sleep before fetching again.
MAXIMUM_RATE_LIMIT_DELAY = 30_000


def _now_ms() -> int:
    return int(time.time() * 1000)


class RateLimitHandling:
    """The rate-limit part of :class:`~.worker.BullWorker` (a mixin before bullmq's Worker)."""

    # bullmq's Worker sets these; declared for the type checker.
    name: str
    opts: dict[str, Any]
    limitUntil: int
    drained: bool
    closing: bool
    paused: bool
    waiting: Any
    commands: WorkerCommands
    _limit_sleep: asyncio.Future[Any] | None = None

    @property
    def rate_limited(self) -> bool:
        """Whether this worker waits for its queue's rate limit to end."""
        return self.limitUntil > _now_ms()

    def _catch_rate_limited(
        self, processor: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        """``processor``, turning a :class:`RateLimited` into Node's handling of it."""

        async def process(job: Any, *args: Any) -> Any:
            try:
                return await processor(job, *args)
            except RateLimited as limited:
                from bullmq import DelayedError

                token = args[0] if args and isinstance(args[0], str) else job.token
                await self._back_to_wait(job, token, limited)
                # The job is no longer active here: bullmq's worker leaves it as it is.
                raise DelayedError(str(limited)) from limited

        return process

    async def _back_to_wait(self, job: Any, token: str, limited: RateLimited) -> None:
        delay_ms = max(1, round(limited.delay * 1000))
        # Limited before the job is back: its return adds a marker that wakes this
        # worker's blocked fetch, which must not take the job straight back.
        self.limitUntil = max(self.limitUntil, _now_ms() + delay_ms)
        try:
            await self.commands.rate_limit(delay_ms)
            ttl = await self.commands.move_back_to_wait(str(job.id), token)
        except Exception as exc:  # its lock expires; the stalled check puts it back
            worker: Any = self
            worker.emit("error", exc, job)
            return
        if ttl > 0:
            self.limitUntil = _now_ms() + ttl
        log.info(
            "job %s id=%s queue=%s: rate limited for %g s; it waits again",
            job.name, job.id, self.name, limited.delay,
        )  # fmt: skip

    async def getNextJob(self, token: str) -> Any:
        """bullmq's fetch, after the queue's rate limit is over (Node's ``waitForRateLimit``)."""
        if self.limitUntil and not await self._wait_for_rate_limit():
            return None
        return await super().getNextJob(token)  # type: ignore[misc]

    async def moveToActive(self, token: str) -> Any:
        """bullmq's, except while rate-limited: a fetch that was blocked on the marker
        when the limit began (the limited job's own return to waiting wakes it) takes
        nothing; a queue without a limiter would otherwise hand the job straight back."""
        if self.rate_limited:
            return None
        return await super().moveToActive(token)  # type: ignore[misc]

    async def _wait_for_rate_limit(self) -> bool:
        """Sleep until ``limitUntil``; False when a close or a pause cut the sleep short.

        Like Node's, a sleep lasts at most ``maximumRateLimitDelay``; a limit that
        another fetch learnt of meanwhile is slept for in turn.
        """
        until = self.limitUntil
        while until > _now_ms():
            sleep = self._limit_sleep
            if sleep is None or sleep.done():
                maximum = self.opts.get("maximumRateLimitDelay", MAXIMUM_RATE_LIMIT_DELAY)
                sleep = asyncio.ensure_future(asyncio.sleep(min(until - _now_ms(), maximum) / 1000))
                self._limit_sleep = sleep
                if self.waiting is None:  # the fetch loop starts no other fetch meanwhile
                    self.waiting = sleep
            try:
                await asyncio.shield(sleep)
            except asyncio.CancelledError:
                if not sleep.cancelled():
                    raise  # this fetch itself was cancelled (a forced close)
                return False
            finally:
                if self.waiting is sleep:
                    self.waiting = None
            if self.closing or self.paused:
                return False
            if self.limitUntil == until:
                break
            until = self.limitUntil
        self.limitUntil = 0
        self.drained = False  # fetch at once rather than block on the marker
        return True

    def _interrupt_rate_limit_wait(self) -> None:
        if self._limit_sleep is not None:
            self._limit_sleep.cancel()

    async def pause(self, do_not_wait_active: bool = False) -> None:
        # bullmq's pause sets ``paused`` before the cancelled sleep wakes its fetch.
        self._interrupt_rate_limit_wait()
        await super().pause(do_not_wait_active)  # type: ignore[misc]

    async def nextJobFromJobData(
        self,
        job_data: dict[str, Any] | None = None,
        job_id: str | None = None,
        limit_until: int = 0,
        delay_until: int = 0,
        token: str | None = None,
    ) -> Any:
        """bullmq's, with the limiter's TTL read as Node's ``updateDelays`` reads it."""
        ttl = int(limit_until or 0)
        until = self.limitUntil
        job = await super().nextJobFromJobData(  # type: ignore[misc]
            job_data, job_id, ttl, int(delay_until or 0), token
        )
        # A fetch that learnt of no limit does not end one this worker knows of (a
        # handler's RateLimited: BullMQ reports that key only to workers with a limiter).
        now = _now_ms()
        self.limitUntil = max(now + ttl if ttl > 0 else 0, until if until > now else 0)
        return job
