"""Finished jobs → ``_jobs`` rows → removal from Redis, for one queue.

The ``completed`` and ``failed`` sets are the truth; the queue's event stream
only wakes the recorder early, and a periodic sweep covers anything an event
missed. A batch is read oldest first, written in one transaction with an
idempotent insert, and only after the commit are exactly those jobs removed,
each only if it is still the same finished job (same ``finishedOn`` and
attempt count). Two recorders for a moment therefore write nothing twice and
lose nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis

from . import keys
from .store import JobRecord, JobStore, StoreError

log = logging.getLogger("bullworker.recorder")

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

#: Removes one recorded job if it is unchanged. KEYS: finished set, job hash,
#: then the job's sub-keys. ARGV: job id, finishedOn, attempts, dedup prefix.
REMOVE_IF_UNCHANGED = """
if not redis.call("ZSCORE", KEYS[1], ARGV[1]) then return 0 end
local f = redis.call("HMGET", KEYS[2], "finishedOn", "atm", "attemptsMade", "deid")
local attempts = f[2] or f[3] or "0"
if f[1] ~= ARGV[2] or attempts ~= ARGV[3] then return -1 end
if f[4] then
  local dedup = ARGV[4] .. f[4]
  if redis.call("GET", dedup) == ARGV[1] then redis.call("DEL", dedup) end
end
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("DEL", unpack(KEYS, 2))
return 1
"""

#: Drops a set member whose job hash no longer exists. KEYS: set, job hash.
DROP_ORPHAN = """
if redis.call("EXISTS", KEYS[2]) == 0 then return redis.call("ZREM", KEYS[1], ARGV[1]) end
return 0
"""

Status = Literal["completed", "failed"]


def _ms(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _json(raw: str | None, default: Any = None) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def stream_entries(replies: Any) -> list[tuple[str, dict[str, str]]]:
    """XREAD replies as ``(id, fields)`` pairs (RESP2 list or RESP3 dict shape)."""
    groups = list(replies.values()) if isinstance(replies, dict) else [e for _, e in replies or []]
    found: list[tuple[str, dict[str, str]]] = []
    for group in groups:
        if (
            group
            and isinstance(group[0], list)
            and group[0]
            and isinstance(group[0][0], list | tuple)
        ):
            group = group[0]
        found.extend((entry[0], entry[1]) for entry in group)
    return found


def trace_id(opts: Any) -> str | None:
    """The trace id of a W3C ``traceparent`` job option, if any."""
    value = opts.get("traceparent") if isinstance(opts, dict) else None
    match = _TRACEPARENT.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


def attempts_of(raw: dict[str, str]) -> str:
    """The attempt count as BullMQ stores it (``atm``, or ``attemptsMade`` before 5.x)."""
    return raw.get("atm") or raw.get("attemptsMade") or "0"


def to_record(queue: str, job_id: str, status: Status, raw: dict[str, str]) -> JobRecord:
    """A ``_jobs`` row for a finished job's hash; tolerant of malformed hashes."""
    opts = _json(raw.get("opts"), {})
    opts = opts if isinstance(opts, dict) else {}
    completed = _ms(raw.get("finishedOn")) or datetime.now(UTC)
    created = _ms(raw.get("timestamp")) or completed
    delay = opts.get("delay") if isinstance(opts.get("delay"), int) else 0
    if status == "completed":
        result = _json(raw.get("returnvalue"))
    else:
        stack = _json(raw.get("stacktrace"), [])
        result = {"reason": raw.get("failedReason", ""), "stack": stack}
    try:
        attempt = int(attempts_of(raw))
    except ValueError:
        attempt = 0
    return JobRecord(
        queue=queue,
        queue_id=job_id,
        attempt=attempt,
        name=raw.get("name") or "(unnamed)",
        data=_json(raw.get("data"), {}),
        status=status,
        result=result,
        created_at=created,
        should_execute_at=_ms(str(int(created.timestamp() * 1000) + (delay or 0))) or created,
        executed_at=_ms(raw.get("processedOn")),
        completed_at=completed,
        trace_id=trace_id(opts),
    )


@dataclass
class RecorderStats:
    """What a recorder did since it started."""

    rows_written: int = 0
    jobs_removed: int = 0
    batches: int = 0
    last_error: str | None = None
    last_batch_at: float | None = None


class Recorder:
    """Records one queue's finished jobs while its runner is the leader."""

    def __init__(
        self,
        *,
        queue: str,
        prefix: str,
        redis: aioredis.Redis,
        events_redis: Callable[[], aioredis.Redis],
        store: Callable[[], Awaitable[JobStore]],
        batch_size: int = 500,
        sweep_interval: float = 5.0,
    ) -> None:
        self.queue = queue
        self.prefix = prefix
        self.redis = redis
        self._events_redis = events_redis
        self._store = store
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        self.stats = RecorderStats()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._remove = redis.register_script(REMOVE_IF_UNCHANGED)
        self._drop = redis.register_script(DROP_ORPHAN)

    def _key(self, suffix: str) -> str:
        return keys.queue_key(self.prefix, self.queue, suffix)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    async def start(self) -> None:
        """Catch up on everything already finished, then keep up."""
        if self.running:
            return
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._record_loop(), name=f"bullworker-recorder:{self.queue}"),
            asyncio.create_task(self._watch_events(), name=f"bullworker-events:{self.queue}"),
        ]
        log.info("recording queue %s", self.queue)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
            log.info("stopped recording queue %s", self.queue)

    async def record_batch(self) -> int:
        """Record and remove up to ``batch_size`` finished jobs of each set; return the count."""
        listed: list[tuple[Status, str]] = []
        for status in keys.FINISHED_SETS:
            ids = await self.redis.zrange(self._key(status), 0, self.batch_size - 1)
            listed.extend((status, job_id) for job_id in ids)  # type: ignore[misc]
        if not listed:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, job_id in listed:
                pipe.hgetall(keys.job_key(self.prefix, self.queue, job_id))
            hashes: list[dict[str, str]] = await pipe.execute()
        found = [(s, i, raw) for (s, i), raw in zip(listed, hashes, strict=True) if raw]
        orphans = [(s, i) for (s, i), raw in zip(listed, hashes, strict=True) if not raw]
        records = [to_record(self.queue, job_id, status, raw) for status, job_id, raw in found]
        if records:
            store = await self._store()
            self.stats.rows_written += await store.insert_records(records)
        removed = await self._remove_recorded(found) if found else 0
        for status, job_id in orphans:
            if await self._drop(
                keys=[self._key(status), keys.job_key(self.prefix, self.queue, job_id)],
                args=[job_id],
            ):
                log.warning(
                    "queue %s: job %s was removed before it could be recorded", self.queue, job_id
                )
        self.stats.jobs_removed += removed
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        return len(listed)

    async def _remove_recorded(self, found: list[tuple[Status, str, dict[str, str]]]) -> int:
        dedup = keys.deduplication_key_prefix(self.prefix, self.queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            for status, job_id, raw in found:
                job_key = keys.job_key(self.prefix, self.queue, job_id)
                await self._remove(
                    keys=[
                        self._key(status),
                        job_key,
                        *(job_key + s for s in keys.JOB_SUBKEY_SUFFIXES),
                    ],
                    args=[job_id, raw.get("finishedOn", ""), attempts_of(raw), dedup],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(1 for r in results if r == 1)

    async def lag(self) -> float:
        """Seconds since the oldest finished job still waiting to be recorded finished."""
        oldest: list[float] = []
        for status in keys.FINISHED_SETS:
            first = await self.redis.zrange(self._key(status), 0, 0, withscores=True)
            oldest.extend(score for _, score in first)  # type: ignore[str-unpack,misc,unused-ignore]
        return max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0

    async def _record_loop(self) -> None:
        backoff = 0.0
        while True:
            try:
                count = await self.record_batch()
                if backoff:
                    log.info("queue %s: recording again after an outage", self.queue)
                backoff = 0.0
                self.stats.last_error = None
                if count >= self.batch_size:
                    continue  # more is waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                backoff = min(max(0.5, backoff * 2), 30.0)
                kind = "database" if isinstance(exc, StoreError) else "Redis"
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "queue %s: cannot record finished jobs (%s: %s); they stay in Redis, retrying in %.1f s",
                    self.queue, kind, self.stats.last_error, backoff,
                )  # fmt: skip
                await asyncio.sleep(backoff)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.sweep_interval)
                await asyncio.sleep(0.05)  # let a burst of finishes gather into one batch
            except TimeoutError:
                pass  # the periodic sweep
            self._wake.clear()

    async def _watch_events(self) -> None:
        """Wake the record loop when the queue reports a finished job."""
        stream = self._key(keys.EVENTS_SUFFIX)
        last_id = "$"
        client = self._events_redis()
        try:
            while True:
                try:
                    replies: Any = await client.xread({stream: last_id}, count=500, block=10_000)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("queue %s: event stream read failed: %s", self.queue, exc)
                    await asyncio.sleep(1.0)
                    continue
                for entry_id, fields in stream_entries(replies):
                    last_id = entry_id
                    if fields.get("event") in keys.FINISHED_SETS:
                        self._wake.set()
        finally:
            await client.aclose()
