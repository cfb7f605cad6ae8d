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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.core.status import Status
from bullworker.history.hashes import attempts_of, to_record
from bullworker.history.store import JobRecord, JobStore, StoreError

log = logging.getLogger("bullworker.recorder")

#: The oldest finished jobs of a set with their hashes, as one JSON string:
#: one reply to parse instead of one per hash field (the pure-Python RESP
#: parser made that most of a batch's time). KEYS: finished set. ARGV: job key
#: prefix, count. ``[[id, [field, value, ...]], ...]``; a vanished job's hash
#: comes as ``{}`` (cjson's empty table).
FETCH_FINISHED = """
local ids = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
if #ids == 0 then return "[]" end
local found = {}
for i, id in ipairs(ids) do
  found[i] = {id, redis.call("HGETALL", ARGV[1] .. id)}
end
return cjson.encode(found)
"""

#: Removes one recorded job if it is still in its set, unchanged (same
#: finishedOn and attempts): 1 removed, 0 not in the set, -1 changed.
_REMOVE_ONE = """
local function remove_one(set, id, finished, attempts, dedup_prefix, job_keys)
  if not redis.call("ZSCORE", set, id) then return 0 end
  local f = redis.call("HMGET", job_keys[1], "finishedOn", "atm", "attemptsMade", "deid")
  if f[1] ~= finished or (f[2] or f[3] or "0") ~= attempts then return -1 end
  if f[4] then
    local dedup = dedup_prefix .. f[4]
    if redis.call("GET", dedup) == id then redis.call("DEL", dedup) end
  end
  redis.call("ZREM", set, id)
  redis.call("DEL", unpack(job_keys))
  return 1
end
"""

#: Removes one recorded job if it is unchanged. KEYS: finished set, job hash,
#: then the job's sub-keys. ARGV: job id, finishedOn, attempts, dedup prefix.
REMOVE_IF_UNCHANGED = (
    _REMOVE_ONE
    + "return remove_one(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(KEYS, 2)})"
)

#: The same for a batch in one call; returns how many were removed. KEYS:
#: finished set, then per job its hash and sub-keys (``_REMOVE_STRIDE`` keys).
#: ARGV: dedup prefix, then per job: id, finishedOn, attempts.
_REMOVE_STRIDE = 1 + len(keys.JOB_SUBKEY_SUFFIXES)
REMOVE_RECORDED = (
    _REMOVE_ONE
    + f"""
local removed = 0
for j = 0, (#ARGV - 1) / 3 - 1 do
  local first = 2 + j * {_REMOVE_STRIDE}
  local job_keys = {{unpack(KEYS, first, first + {_REMOVE_STRIDE - 1})}}
  if remove_one(KEYS[1], ARGV[2 + j * 3], ARGV[3 + j * 3], ARGV[4 + j * 3], ARGV[1], job_keys) == 1
  then removed = removed + 1 end
end
return removed
"""
)

#: Drops a set member whose job hash no longer exists. KEYS: set, job hash.
DROP_ORPHAN = """
if redis.call("EXISTS", KEYS[2]) == 0 then return redis.call("ZREM", KEYS[1], ARGV[1]) end
return 0
"""


async def recording_lag(redis: aioredis.Redis, prefix: str, queue: str) -> float:
    """Seconds since the oldest finished job of ``queue`` still in Redis finished (0 if none)."""
    oldest: list[float] = []
    for status in keys.FINISHED_SETS:
        key = keys.queue_key(prefix, queue, status)
        first = await redis.zrange(key, 0, 0, withscores=True)
        oldest.extend(score for _, score in first)  # type: ignore[str-unpack,misc,unused-ignore]
    return max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0


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
        self._idle = asyncio.Event()  # the record loop waits for a wake
        self._tasks: list[asyncio.Task[None]] = []
        #: Jobs left in Redis because another job's row has their key (reported once).
        self._clashes: set[str] = set()
        self._fetch = redis.register_script(FETCH_FINISHED)
        self._remove = redis.register_script(REMOVE_RECORDED)
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
        listed: list[tuple[Status, str, dict[str, str]]] = []
        job_prefix = keys.job_key(self.prefix, self.queue, "")
        for status in keys.FINISHED_SETS:
            reply = await self._fetch(keys=[self._key(status)], args=[job_prefix, self.batch_size])
            for job_id, fields in json.loads(reply):
                raw = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}
                listed.append((status, job_id, raw))
        if not listed:
            return 0
        found = [(s, i, raw) for s, i, raw in listed if raw]
        orphans = [(s, i) for s, i, raw in listed if not raw]
        records = [to_record(self.queue, job_id, status, raw) for status, job_id, raw in found]
        if records:
            store = await self._store()
            inserted = await store.insert_records(records)
            self.stats.rows_written += inserted
            if inserted < len(records):  # rows were there already: whose are they?
                found = await self._own_rows(store, found, records)
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

    async def _own_rows(
        self,
        store: JobStore,
        found: list[tuple[Status, str, dict[str, str]]],
        records: list[JobRecord],
    ) -> list[tuple[Status, str, dict[str, str]]]:
        """The jobs of ``found`` whose row in ``_jobs`` is theirs, safe to remove from Redis.

        A row already there is normally this very job's, written by a batch that
        stopped before its removal. Another job with the same id, ``createdAt``
        and attempt (a reused id with an explicit ``timestamp`` option) would
        lose its record if removed: it stays in Redis, and is reported once.
        """
        mine = []
        for entry, record in zip(found, records, strict=True):
            rows = await store.get(record.id)
            same = [
                r for r in rows if (r.created_at, r.attempt) == (record.created_at, record.attempt)
            ]
            if not same or same[0].completed_at == record.completed_at:
                mine.append(entry)
            elif record.id not in self._clashes:
                self._clashes.add(record.id)
                log.error(
                    "queue %s: job %s cannot be recorded: _jobs already has a row with its id, "
                    "createdAt and attempt from another job; it stays in Redis",
                    self.queue, record.id,
                )  # fmt: skip
        return mine

    async def _remove_recorded(self, found: list[tuple[Status, str, dict[str, str]]]) -> int:
        """Remove the recorded jobs that are unchanged: one script call per set."""
        removed = 0
        for status in keys.FINISHED_SETS:
            job_keys: list[str] = [self._key(status)]
            args: list[str] = [keys.deduplication_key_prefix(self.prefix, self.queue)]
            for job_status, job_id, raw in found:
                if job_status == status:
                    job_key = keys.job_key(self.prefix, self.queue, job_id)
                    job_keys += [job_key, *(job_key + s for s in keys.JOB_SUBKEY_SUFFIXES)]
                    args += [job_id, raw.get("finishedOn", ""), attempts_of(raw)]
            if len(args) > 1:
                removed += int(await self._remove(keys=job_keys, args=args))
        return removed

    async def lag(self) -> float:
        """Seconds since the oldest finished job still waiting to be recorded finished."""
        return await recording_lag(self.redis, self.prefix, self.queue)

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
            self._idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self.sweep_interval)
                await asyncio.sleep(0.05)  # let a burst of finishes gather into one batch
            except TimeoutError:
                pass  # the periodic sweep
            self._wake.clear()

    async def _watch_events(self) -> None:
        """Wake the idle record loop when the queue's event stream has moved on.

        Reading every event cost a busy worker about a sixth of its CPU (a few
        events per job, each a round trip and a parse). Instead, once the loop
        is idle, this asks for the newest entry id only: an id other than the
        one of the last wake means jobs may have finished, and if nothing is
        new it blocks until something is. A finished job's event is written by
        the script that adds it to its set, so the batch after the wake sees
        every job whose event came before the id; later ones have later ids.
        """
        stream = self._key(keys.EVENTS_SUFFIX)
        last_id: str | None = None
        client = self._events_redis()
        try:
            while True:
                await self._idle.wait()
                try:
                    top: Any = await client.xrevrange(stream, count=1)
                    newest = top[0][0] if top else "0-0"
                    if newest == last_id:
                        await client.xread({stream: newest}, count=1, block=10_000)
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("queue %s: event stream read failed: %s", self.queue, exc)
                    await asyncio.sleep(1.0)
                    continue
                last_id = newest
                self._idle.clear()
                self._wake.set()
        finally:
            await client.aclose()
