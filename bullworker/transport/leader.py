"""Redis leader election: at most one leader per key, kept alive by a renewed lease.

Acquire is ``SET key token NX PX ttl``; renew and release are compare-and-set Lua
scripts, so an instance never extends or deletes a lock it no longer owns. The
lease is tracked on ``time.monotonic()``: ``is_leader`` turns False as soon as the
lease may have expired, even before Redis answers (or while it does not answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.core.errors import LeaderError as LeaderError
from bullworker.core.tasks import within

__all__ = ["RELEASE_SCRIPT", "RENEW_SCRIPT", "LeaderCallback", "LeaderError", "LeaderService"]

LeaderCallback = Callable[[], Awaitable[None]]

logger = logging.getLogger("bullworker.leader")

#: Extend the lease (PEXPIRE ARGV[2] ms) only if the key still holds our token.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: Delete the lock only if the key still holds our token.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: Seconds between two warnings about Redis errors while a candidate.
_WARN_EVERY = 30.0


class LeaderService:
    """Compete for the lock ``key``; call ``on_became``/``on_lost`` on transitions.

    ``on_lost`` fires when the lease is lost (renewal failed, timed out or the lock
    belongs to someone else), never on :meth:`stop`. If ``on_became`` raises, the
    instance steps down (releases the lock, no ``on_lost``) and competes again.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        ttl: float = 10.0,
        renew_interval: float | None = None,
        retry_delay: float = 1.0,
        on_became: LeaderCallback | None = None,
        on_lost: LeaderCallback | None = None,
        name: str = "leader",
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        margin = min(0.1 * ttl, 0.5)
        self._validity = ttl - margin  # how long a lease is trusted after sending
        interval = ttl / 3 if renew_interval is None else renew_interval
        if not 0 < interval < self._validity:
            raise ValueError(f"renew_interval must be > 0 and < {self._validity:g} (ttl - margin)")
        if retry_delay < 0:
            raise ValueError("retry_delay must be >= 0")
        self._redis = redis
        self._key = key
        self._ttl = ttl
        self._ttl_ms = max(1, int(ttl * 1000))
        self._renew_interval = interval
        self._retry_delay = retry_delay
        self._on_became = on_became
        self._on_lost = on_lost
        self._name = name
        self._token = uuid.uuid4().hex
        self._renew = redis.register_script(RENEW_SCRIPT)
        self._release = redis.register_script(RELEASE_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._leader = False
        self._may_hold = False  # the lock in Redis may carry our token
        self._deadline = 0.0  # monotonic time until which the lease is trusted
        self._leader_since: float | None = None
        self._last_warning = -_WARN_EVERY
        self._follower = False  # the last attempt found the lock held by another instance
        self._attempted = asyncio.Event()  # set once the first attempt has an answer

    @property
    def is_leader(self) -> bool:
        """True only while this instance leads and its lease is known valid."""
        return self._leader and time.monotonic() < self._deadline

    @property
    def is_follower(self) -> bool:
        """True while another instance holds the lock (as the last attempt found)."""
        return self._follower and not self.is_leader

    async def first_attempt(self) -> None:
        """Wait until the first attempt at the lock has an answer (or failed).

        Afterwards :attr:`is_leader` or :attr:`is_follower` says how it went
        (neither when Redis did not answer).
        """
        await self._attempted.wait()

    @property
    def token(self) -> str:
        """Random token (uuid4 hex) this instance stores in the lock."""
        return self._token

    @property
    def leader_since(self) -> float | None:
        """``time.time()`` at which this instance became leader, None if it is not."""
        return self._leader_since if self.is_leader else None

    async def start(self) -> None:
        """Spawn the election task and return immediately."""
        if self._task is not None and not self._task.done():
            raise LeaderError("LeaderService is already running")
        self._attempted = asyncio.Event()
        self._follower = False
        self._task = asyncio.create_task(self._run(), name=f"bullworker-leader:{self._name}")

    async def stop(self) -> None:
        """Stop competing; if leader, release the lock (no ``on_lost``). Idempotent.

        The release is best effort: errors are logged and it waits at most ``ttl``.
        """
        task = self._task
        if task is None:
            return
        task.cancel()
        if task is asyncio.current_task():  # called from a callback: cleanup runs on exit
            return
        await asyncio.wait([task])
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "leader task %r for %s ended with an error",
                self._name,
                self._key,
                exc_info=task.exception(),
            )

    # -- the election loop -------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if await self._acquire() and await self._became():
                    reason = await self._hold()
                    self._set_follower()
                    logger.warning("%r lost leadership of %s: %s", self._name, self._key, reason)
                    await self._call(self._on_lost, "on_lost")
                    await self._release_lock()
                await asyncio.sleep(self._retry_delay)
        finally:
            self._set_follower()
            if self._may_hold:
                await self._release_lock()

    async def _acquire(self) -> bool:
        """One ``SET NX PX`` attempt; errors are logged and count as failure."""
        try:
            return await self._attempt()
        finally:
            self._attempted.set()

    async def _attempt(self) -> bool:
        started = time.monotonic()
        self._may_hold = True
        try:
            result: Any = await within(
                self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms),
                self._validity,
            )
        except Exception as exc:
            # Only a timed-out SET may still have been applied; others never reached Redis.
            self._may_hold = isinstance(exc, TimeoutError | RedisTimeoutError)
            self._warn_candidate(exc)
            return False
        self._last_warning = -_WARN_EVERY
        if not result:
            self._may_hold = False
            if not self._follower:
                self._follower = True
                logger.info("%r is a follower: another instance holds %s", self._name, self._key)
            return False
        self._follower = False
        self._deadline = started + self._validity
        self._leader = True
        self._leader_since = time.time()
        logger.info("%r became leader of %s", self._name, self._key)
        return True

    async def _became(self) -> bool:
        """Run ``on_became``; if it raises, step down and return False."""
        if self._on_became is None:
            return True
        try:
            await self._on_became()
        except Exception:
            logger.exception("%r: on_became failed for %s; stepping down", self._name, self._key)
            self._set_follower()
            await self._release_lock()
            return False
        return True

    async def _hold(self) -> str:
        """Renew the lease every ``renew_interval``; return why leadership was lost."""
        next_renew = self._deadline - self._validity + self._renew_interval
        while True:
            await asyncio.sleep(max(0.0, next_renew - time.monotonic()))
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return "lease expired before it could be renewed"
            started = time.monotonic()
            try:
                renewed: Any = await within(
                    self._renew(keys=[self._key], args=[self._token, self._ttl_ms]),
                    remaining,
                )
            except TimeoutError:
                return "renewal did not answer before the lease expired"
            except Exception as exc:
                return f"renewal failed: {exc!r}"
            if int(renewed) != 1:
                return "the lock is held by someone else"
            self._deadline = started + self._validity
            next_renew = started + self._renew_interval

    # -- helpers -----------------------------------------------------------------

    def _set_follower(self) -> None:
        self._leader = False
        self._leader_since = None

    async def _release_lock(self) -> None:
        """Best-effort compare-and-DEL of our token; errors are logged, not raised."""
        try:
            await within(self._release(keys=[self._key], args=[self._token]), self._ttl)
        except Exception as exc:
            logger.warning("%r could not release %s: %r", self._name, self._key, exc)
        else:
            self._may_hold = False

    async def _call(self, callback: LeaderCallback | None, what: str) -> None:
        if callback is None:
            return
        try:
            await callback()
        except Exception:
            logger.exception("%r: %s callback failed for %s", self._name, what, self._key)

    def _warn_candidate(self, exc: BaseException) -> None:
        now = time.monotonic()
        level = logging.WARNING if now - self._last_warning >= _WARN_EVERY else logging.DEBUG
        if level == logging.WARNING:
            self._last_warning = now
        logger.log(level, "%r could not acquire %s: %r", self._name, self._key, exc)
