"""Finished jobs → ``_jobs`` rows, kept in Redis for a window, then removed; for one queue.

The ``completed`` and ``failed`` sets are the truth. Which jobs finished since
the last batch is read from the queue's event stream (BullMQ writes a
``completed``/``failed`` event in the script that adds the job to its set), from
a cursor kept in Redis so that a new leader goes on from there; a full scan of
the sets at the start, every ``sweep_interval`` and after a gap in the stream
covers anything an event missed. A batch is written in one transaction with an
idempotent insert; only after the commit are exactly those jobs marked recorded
(`keys.RECORDED_FIELD`), each only if it is still the same finished job (same
``finishedOn`` and attempt count) with the same progress and log lines as were
read. Two recorders for a moment therefore write nothing twice and lose nothing.

A recorded job stays in Redis within the queue's keep window (`KeepWindow`: the
newest ``completed`` and ``failed`` ones, for at most an age), so that Node tools
see it; then it is removed, if it is still unchanged. One that changed (a line
logged after it was recorded) is recorded again first: its row gets the new
lines. A job retried (moved back to wait by Node's ``job.retry()``) finishes
again with another ``finishedOn``: a new run, recorded again.

A finished job that left Redis before it was recorded (a ``completed`` or
``failed`` event names a job that is gone, and ``_jobs`` has no row of it) is
counted in `keys.lost_key` and logged once per queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.core.keep import KeepWindow
from bullworker.core.tasks import within
from bullworker.history.backlog import recording_lag
from bullworker.history.batch import Finished, Gone, log_lost, lost_jobs, own_rows
from bullworker.history.hashes import attempts_of, to_record
from bullworker.history.read_ahead import ReadAhead
from bullworker.history.script_calls import FetchNew, MarkRecorded, TrimKept
from bullworker.history.store import JobStore, StoreError

log = logging.getLogger("bullworker.recorder")

#: Members of the finished sets one batch's scan looks at, at most (about 3 ms of Lua).
SCAN_STEP = 2000


@dataclass
class RecorderStats:
    """What a recorder did since it started."""

    rows_written: int = 0
    jobs_removed: int = 0
    jobs_lost: int = 0
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
        log_lines: int = 100,
        keep: KeepWindow | None = None,
    ) -> None:
        self.queue = queue
        self.prefix = prefix
        self.redis = redis
        self._events_redis = events_redis
        self._store = store
        self.batch_size = batch_size
        self.sweep_interval = sweep_interval
        #: How many of a job's last log lines its row keeps.
        self.log_lines = log_lines
        #: Which recorded jobs stay in Redis, and how long.
        self.keep = keep if keep is not None else KeepWindow()
        self.stats = RecorderStats()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # the record loop waits for a wake
        self._tasks: list[asyncio.Task[None]] = []
        #: Jobs left in Redis because another job's row has their key (reported once).
        self._clashes: set[str] = set()
        #: The last event read (None: read the stored one first); when a full scan is due.
        self._cursor: str | None = None
        self._scan_due = 0.0
        #: Where the scan goes on in each finished set: a scan looks at `SCAN_STEP` members
        #: at most per batch, so a long keep window is never walked in one call.
        self._scan_from = dict.fromkeys(keys.FINISHED_SETS, "-inf")
        #: Whether the last batch left work for the next one at once.
        self._more = False
        self._gap_at: str | None = None  # the cursor of the last gap said
        self._lost_logged: set[str] = set()
        self._marking: asyncio.Task[None] | None = None  # the last batch's, while behind
        self._reads = ReadAhead(FetchNew(redis), [*self._sets, self._key(keys.EVENTS_SUFFIX)])
        self._mark = MarkRecorded(redis)
        self._trim = TrimKept(redis)

    def _key(self, suffix: str) -> str:
        return keys.queue_key(self.prefix, self.queue, suffix)

    @property
    def _sets(self) -> list[str]:
        return [self._key(status) for status in keys.FINISHED_SETS]

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    @property
    def more(self) -> bool:
        """Whether the last batch left work for the next one at once."""
        return self._more

    async def start(self) -> None:
        """Catch up on everything already finished, then keep up."""
        if self.running:
            return
        self._cursor, self._scan_due = None, 0.0
        self._scan_from = dict.fromkeys(keys.FINISHED_SETS, "-inf")
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
        self._reads.drop()
        marking, self._marking = self._marking, None
        if marking is not None:  # its jobs stay unmarked if it is cut short: read again
            marking.cancel()
            await asyncio.gather(marking, return_exceptions=True)
            self._cursor = None
        if tasks:
            log.info("stopped recording queue %s", self.queue)

    async def finish(self, within: float) -> None:
        """Stop, after recording what finished until now, within ``within`` seconds.

        A clean stop calls it once the workers have closed: the jobs that finished
        during the shutdown are recorded before the process exits.
        """
        if not self.running:
            return
        await self.stop()
        self._scan_due = 0.0
        before = self.stats.rows_written
        try:
            async with asyncio.timeout(max(within, 0.0)):
                while True:
                    await self.record_batch()
                    if not self._more:
                        break
        except TimeoutError:
            log.warning(
                "queue %s: the shutdown grace ended before every finished job was recorded; "
                "the next recorder leader records the rest", self.queue,
            )  # fmt: skip
        except Exception as exc:
            log.error(
                "queue %s: cannot record the last finished jobs (%s: %s); they stay in Redis "
                "for the next recorder leader", self.queue, type(exc).__name__, exc,
            )  # fmt: skip
        written = self.stats.rows_written - before
        if written:
            log.info(
                "queue %s: recorded %d job(s) that finished during the shutdown",
                self.queue,
                written,
            )

    async def record_batch(self) -> int:
        """Record what finished since the last batch (up to ``batch_size`` jobs), count the
        jobs lost, and trim the keep window; return how many finished jobs it handled."""
        if self._cursor is None:
            stored = await self.redis.get(keys.recorder_cursor_key(self.prefix, self.queue))
            self._cursor = "" if stored is None else str(stored)
        scan = time.monotonic() >= self._scan_due
        if scan:
            self._scan_due = time.monotonic()  # 0 below when a job changed since the read
        batch = await self._reads.read(
            self._fetch_args(self._cursor, scan, self._scan_from.values())
        )
        scan_from = {status: batch.resume.get(status, "-inf") for status in self._scan_from}
        if batch.scanned:
            scan_from = dict.fromkeys(keys.FINISHED_SETS, "-inf")
        scan_on = scan and not batch.scanned  # the next batch goes on with this scan
        if (batch.more or scan_on) and not batch.gone:  # a backlog: read on meanwhile
            self._reads.start(self._fetch_args(batch.cursor, scan_on, scan_from.values()), batch)
        if batch.gap and self._gap_at != self._cursor:
            self._gap_at = self._cursor  # said once, not at each retry of a failing batch
            log.warning(
                "queue %s: its event stream was trimmed past what the recorder had read (it was "
                "behind, or the stream was deleted): the finished sets are scanned, but jobs "
                "that left Redis unrecorded meanwhile are not counted", self.queue,
            )  # fmt: skip
        jobs = batch.jobs
        records = [
            to_record(self.queue, j.job_id, j.status, j.raw, j.logs, prefix=self.prefix)
            for j in jobs
        ]
        lost: list[Gone] = []
        if records or batch.gone:
            store = await self._store()
            if records:
                await store.maintain()  # the partitions ahead, once an hour at most
                written = await store.insert_records(records)
                self.stats.rows_written += written
                # Neither inserted nor updated: a row was there already. Whose is it?
                if written < len(records):
                    jobs, rewritten = await own_rows(
                        store, self.queue, jobs, records, self._clashes
                    )
                    self.stats.rows_written += rewritten
            lost = await lost_jobs(store, self.queue, batch.gone) if batch.gone else []
        await self._marked()  # the last batch's, in order: it stores the cursor before ours
        behind = batch.more or scan_on
        marking = None
        if jobs or batch.gone or batch.cursor != self._cursor:
            marking = self._mark_recorded(jobs, batch.gone, lost, batch.cursor)
        trimmed = 0
        if behind and not batch.gone:  # marked, and trimmed, while the next batch is written
            after = self._mark_and_trim(marking)
            self._marking = asyncio.create_task(after, name=f"bullworker-mark:{self.queue}")
        else:
            if marking is not None:
                await marking
            trimmed = await self.trim()
        self._cursor = batch.cursor
        # Where the scan goes on: only now, so that a batch that failed is read again.
        self._scan_from = scan_from
        if batch.scanned and self._scan_due:  # not set to 0 above: some changed since the read
            self._scan_due = time.monotonic() + self.sweep_interval
        for entry in lost:
            if entry.status not in self._lost_logged:
                self._lost_logged.add(entry.status)
                log_lost(self.queue, entry)
        self._more = behind or trimmed >= self.batch_size
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        return len(jobs) + len(batch.gone)

    def _fetch_args(self, cursor: str, scan: bool, scan_from: Iterable[str]) -> list[str | int]:
        return [
            keys.job_key(self.prefix, self.queue, ""), self.batch_size, self.log_lines,
            cursor, int(scan), max(100, self.batch_size * 4), keys.RECORDED_FIELD,
            *scan_from, SCAN_STEP,
        ]  # fmt: skip

    async def _marked(self) -> None:
        """Wait for the mark (and trim) the last batch started. If it failed, its jobs are read
        again from the cursor stored before it (their rows are written: a rewrite is a no-op)."""
        marking, self._marking = self._marking, None
        if marking is None:
            return
        try:
            await marking
        except BaseException:
            self._cursor = None
            self._reads.drop()
            raise

    async def _mark_and_trim(self, marking: Awaitable[None] | None) -> None:
        if marking is not None:
            await marking
        # Keeping nothing, the mark removed the batch's jobs: while behind, the oldest left
        # in the sets are unrecorded ones, which a trim would only read.
        if not self.keep.keeps_nothing:
            await self.trim()

    async def _mark_recorded(
        self, jobs: list[Finished], gone: list[Gone], lost: list[Gone], cursor: str
    ) -> None:
        """`MARK_RECORDED`: mark (or remove) the recorded jobs, count ``lost``, store ``cursor``."""
        args: list[str | int] = [
            keys.job_key(self.prefix, self.queue, ""),
            keys.deduplication_key_prefix(self.prefix, self.queue),
            self.log_lines, cursor if cursor != self._cursor else "",
            int(self.keep.at_once("completed")), int(self.keep.at_once("failed")),
            int(time.time() * 1000), keys.RECORDED_FIELD, len(jobs),
        ]  # fmt: skip
        for job in jobs:
            args += [job.status, job.job_id, job.score, job.raw.get("finishedOn", "")]
            args += [attempts_of(job.raw), job.mark]
        for entry in gone:
            args += [entry.status, entry.job_id, int(entry.in_set), int(entry in lost)]
        where = [
            *self._sets,
            keys.recorder_cursor_key(self.prefix, self.queue),
            keys.lost_key(self.prefix, self.queue),
        ]
        marked, removed, counted = (int(n) for n in await self._mark(keys=where, args=args))
        self.stats.jobs_removed += removed
        self.stats.jobs_lost += counted
        if marked + removed < len(jobs):
            self._scan_due = 0.0  # some changed since the read: read them again

    async def trim(self) -> int:
        """Remove the recorded jobs beyond the keep window (at most ``batch_size`` a set)."""
        cutoff = ""
        if self.keep.age is not None:
            cutoff = str(int(time.time() * 1000 - self.keep.age * 1000))
        args: list[str | int] = [
            keys.job_key(self.prefix, self.queue, ""),
            keys.deduplication_key_prefix(self.prefix, self.queue),
            self.log_lines, self.batch_size, keys.RECORDED_FIELD,
        ]  # fmt: skip
        for status in keys.FINISHED_SETS:
            args += [self.keep.count(status), cutoff]
        removed, unmarked = (int(n) for n in await self._trim(keys=self._sets, args=args))
        if unmarked:
            self._scan_due = 0.0  # changed since recorded: record them again first
        self.stats.jobs_removed += removed
        return removed

    async def lag(self) -> float:
        """Seconds since the oldest finished job still waiting to be recorded finished."""
        return await recording_lag(self.redis, self.prefix, self.queue)

    async def _record_loop(self) -> None:
        backoff = 0.0
        while True:
            try:
                await self.record_batch()
                if backoff:
                    log.info("queue %s: recording again after an outage", self.queue)
                backoff = 0.0
                self.stats.last_error = None
                if self._more:
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
                await within(self._wake.wait(), self.sweep_interval)
                await asyncio.sleep(0.05)  # let a burst of finishes gather into one batch
            except TimeoutError:
                pass  # the periodic sweep
            self._wake.clear()

    async def _watch_events(self) -> None:
        """Wake the idle record loop when the queue's event stream has moved on.

        Reading every event in Python cost a busy worker about a sixth of its CPU
        (a few events per job, each a round trip and a parse). Instead, once the
        loop is idle, this asks for the newest entry id only: an id other than the
        one of the last wake means jobs may have finished, and if nothing is new
        it blocks until something is. The batch then reads the events in Lua.
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
