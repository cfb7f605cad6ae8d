"""The runner's recording service: a leader lock and a recorder per queue."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from . import keys
from .config import AppConfig
from .connection import redis_client
from .leader import LeaderCallback, LeaderService
from .recorder import Recorder
from .store import JobStore, open_store

log = logging.getLogger("bullworker.recording")


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

    async def store(self) -> JobStore:
        """The store, opened (and its table created) on first use."""
        async with self._store_lock:
            if self._store is None:
                self._store = open_store(
                    self.config.database_url,
                    sqlite_path=self.config.sqlite_path,
                    pg_schema=self.config.database_schema,
                )
            if not self._store_opened:
                await self._store.open()
                self._store_opened = True
            return self._store

    async def start(self) -> None:
        prefix = self.config.bull_prefix
        for queue in self.queues:
            recorder = Recorder(
                queue=queue,
                prefix=prefix,
                redis=self._client,
                events_redis=lambda: redis_client(self._redis),
                store=self.store,
                batch_size=self.config.recorder_batch_size,
                sweep_interval=self.config.recorder_sweep_interval,
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

    def _became(self, queue: str, recorder: Recorder) -> LeaderCallback:
        async def became() -> None:
            await self._client.hset(
                keys.leader_info_key(self.config.bull_prefix, queue),
                mapping={"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()},
            )
            await recorder.start()

        return became

    async def stop(self) -> None:
        for recorder in self.recorders.values():
            await recorder.stop()
        for leader in self.leaders.values():
            await leader.stop()
        if self._store is not None and self._given_store is None and self._store_opened:
            await self._store.close()
        self._store_opened = False
        await self._client.aclose()
