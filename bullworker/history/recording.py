"""The runner's recording service: a leader lock and a recorder per queue."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.core.errors import StoreError
from bullworker.core.keep import keep_windows
from bullworker.history.recorder import Recorder
from bullworker.history.store import JobStore, store_for
from bullworker.transport.connection import redis_client
from bullworker.transport.leader import LeaderCallback, LeaderService

log = logging.getLogger("bullworker.recording")

#: Rows one retention statement deletes (a short transaction each).
RETENTION_BATCH_SIZE = 1000
#: Seconds between two looks at whether retention is due; at most the interval itself.
_RETENTION_TICK = 5.0


def recorded_queues(config: AppConfig, consumed: list[str]) -> list[str]:
    """The queues a runner competes to record: those it consumes, then ``RECORD_QUEUES``.

    A queue of ``RECORD_QUEUES`` gets a leader election and a recorder but no
    Worker, so jobs that only other services (Node) process on it are recorded
    without this runner taking them. ``RECORD_JOBS=false`` records nothing.
    """
    if not config.record_jobs:
        if config.record_only_queues:
            log.warning(
                "RECORD_JOBS=false: not recording RECORD_QUEUES (%s)",
                ", ".join(config.record_only_queues),
            )
        return []
    return list(dict.fromkeys([*consumed, *config.record_only_queues]))


class RecordingService:
    """Competes for each queue's recorder lock and records while it holds it."""

    def __init__(self, config: AppConfig, queues: list[str], store: JobStore | None = None) -> None:
        self.config = config
        self.queues = queues
        self._given_store = store
        self._store: JobStore | None = store
        self._store_lock = asyncio.Lock()
        self._store_opened = False
        self.recorders: dict[str, Recorder] = {}
        self.leaders: dict[str, LeaderService] = {}
        self._redis = config.redis_settings("bull")
        self._client = redis_client(self._redis)
        self._retention: asyncio.Task[None] | None = None

    async def store(self) -> JobStore:
        """The store, opened (and its table created) on first use."""
        async with self._store_lock:
            if self._store is None:
                self._store = store_for(self.config)
            if not self._store_opened:
                await self._store.open()
                self._store_opened = True
            return self._store

    async def start(self) -> None:
        prefix = self.config.bull_prefix
        if self.queues:
            log.debug("competing to record queue(s) %s", ", ".join(self.queues))
        config = self.config
        default, windows = keep_windows(
            config.keep_completed, config.keep_failed, config.keep_age, config.queue_keep
        )
        for queue in self.queues:
            recorder = Recorder(
                queue=queue,
                prefix=prefix,
                redis=self._client,
                events_redis=lambda: redis_client(self._redis),
                store=self.store,
                batch_size=self.config.recorder_batch_size,
                sweep_interval=self.config.recorder_sweep_interval,
                log_lines=self.config.jobs_log_lines,
                keep=windows.get(queue, default),
            )
            leader = LeaderService(
                self._client,
                keys.leader_key(prefix, queue),
                ttl=self.config.leader_ttl,
                retry_delay=min(1.0, self.config.leader_ttl / 4),
                on_became=self._became(queue, recorder),
                on_lost=recorder.stop,
                name=f"recorder:{queue}",
            )
            self.recorders[queue] = recorder
            self.leaders[queue] = leader
            await leader.start()
        if self.config.jobs_retention and self._retention is None:
            self._retention = asyncio.create_task(
                self._retention_loop(), name="bullworker-retention"
            )
        await self._check_store()

    async def _check_store(self) -> None:
        """Say at the start when the database cannot be reached; recording waits for it."""
        if not self.queues:
            return
        if self._store is None:
            self._store = store_for(self.config)  # built, opened on first use
        try:
            await self._store.reachable()
        except StoreError as exc:
            log.warning("%s; finished jobs stay in Redis until it can be reached", exc)

    def describe_store(self) -> str:
        """Where the rows go, without secrets (``SQLite ./bullworker.sqlite3``)."""
        if self._store is None:
            self._store = store_for(self.config)  # built, not opened
        return self._store.describe()

    async def first_election(self) -> None:
        """Wait until the first attempt at each queue's lock has an answer."""
        await asyncio.gather(*(leader.first_attempt() for leader in self.leaders.values()))

    def roles(self) -> dict[str, str]:
        """Each queue's role: ``leader`` (this process records it), ``follower``
        (another one does) or ``pending`` (no answer from Redis yet)."""
        return {
            queue: "leader" if leader.is_leader else "follower" if leader.is_follower else "pending"
            for queue, leader in self.leaders.items()
        }

    @property
    def is_leader(self) -> bool:
        """Whether this process currently records at least one queue."""
        return any(leader.is_leader for leader in self.leaders.values())

    async def apply_retention(self) -> int:
        """Delete ``_jobs`` rows that finished more than ``JOBS_RETENTION`` ago; return the count."""
        from bullworker.core.durations import parse_duration

        if not self.config.jobs_retention:
            return 0
        cutoff = datetime.now(UTC) - parse_duration(self.config.jobs_retention)
        store = await self.store()
        deleted = await store.prune(older_than=cutoff, batch_size=RETENTION_BATCH_SIZE)
        log.info(
            "retention: deleted %d _jobs row(s) finished before %s (JOBS_RETENTION=%s)",
            deleted, cutoff.isoformat(timespec="seconds"), self.config.jobs_retention,
        )  # fmt: skip
        return deleted

    async def _retention_loop(self) -> None:
        """Apply retention once per interval while leading a queue; never raises."""
        interval = self.config.jobs_retention_interval
        due = 0.0  # as soon as this process leads a queue
        while True:
            await asyncio.sleep(min(interval, _RETENTION_TICK))
            if not self.is_leader or time.monotonic() < due:
                continue
            try:
                await self.apply_retention()
                due = time.monotonic() + interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                due = time.monotonic() + min(interval, 60.0)
                log.error("retention failed (%s: %s); trying again later", type(exc).__name__, exc)

    def _became(self, queue: str, recorder: Recorder) -> LeaderCallback:
        async def became() -> None:
            await self._client.hset(
                keys.leader_info_key(self.config.bull_prefix, queue),
                mapping={"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()},
            )
            await recorder.start()

        return became

    async def finish(self, within: float) -> None:
        """Record, within ``within`` seconds, what finished in the queues this process leads,
        then stop recording them (a clean stop calls it once the workers have closed)."""
        leading = [
            recorder
            for queue, recorder in self.recorders.items()
            if self.leaders[queue].is_leader and recorder.running
        ]
        await asyncio.gather(*(recorder.finish(within) for recorder in leading))

    async def stop(self) -> None:
        retention, self._retention = self._retention, None
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        for recorder in self.recorders.values():
            await recorder.stop()
        for leader in self.leaders.values():
            await leader.stop()
        if self._store is not None and self._given_store is None and self._store_opened:
            await self._store.close()
        self._store_opened = False
        await self._client.aclose()
