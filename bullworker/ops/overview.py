"""Every queue at a glance, for the dashboard: counts, paused, workers, the oldest waiting job.

`queues_overview` adds to `queues.list_queues` (counts per BullMQ state and the
paused flag) the workers connected to each queue, as Node's ``Queue.getWorkers()``
lists them (bullmq's ``Queue.get_workers()``: the Redis connections named
``<prefix>:<base64 of the queue>:w:<worker>``, which bullworker's runners and
Node workers both set), and how long the next job to start has been due.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.errors import QueueUnavailable
from bullworker.history.backlog import read_lost
from bullworker.ops.queues import QueueInfo, list_queues
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker connected to a queue: its name, and its connection's age and idle time."""

    name: str
    age_seconds: int | None
    idle_seconds: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ageSeconds": self.age_seconds, "idleSeconds": self.idle_seconds}


@dataclass(frozen=True, slots=True)
class QueueOverview:
    """One queue: `QueueInfo`, its workers and the age of its oldest waiting job."""

    info: QueueInfo
    workers: list[WorkerInfo] = field(default_factory=list)
    #: Why the workers are unknown (CLIENT LIST refused...), else None.
    workers_error: str | None = None
    #: Seconds since the next job to start became due (None when none waits).
    oldest_waiting: float | None = None
    #: Finished jobs that left Redis before they were recorded (`history.backlog.LostJobs`).
    lost: int = 0

    @property
    def queue(self) -> str:
        return self.info.queue

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.info.to_dict(),
            "workers": [w.to_dict() for w in self.workers],
            "workersError": self.workers_error,
            "oldestWaitingSeconds": self.oldest_waiting,
            "lost": self.lost,
        }


def _number(value: Any) -> int | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return int(text) if text.isdigit() else None


def worker_name(rawname: str) -> str:
    """The worker's own name in a connection name ``<prefix>:<base64 queue>:w:<name>``."""
    _, sep, name = rawname.partition(":w:")
    return name if sep and name else rawname


async def queue_workers(app: App, queue: str) -> list[WorkerInfo]:
    """The workers connected to ``queue`` (bullmq's ``Queue.get_workers()``)."""
    config = app.config
    bull = open_queue(config, queue)
    try:
        found = await bounded(config, f"list the workers of queue {queue}", bull.get_workers())
    finally:
        await close_queue(bull, config.redis_timeout)
    workers = []
    for client in found:
        raw = client.get("rawname") or client.get("name") or ""
        if raw == "CLIENT LIST not supported":
            raise RuntimeError("this Redis does not allow CLIENT LIST")
        workers.append(
            WorkerInfo(
                name=worker_name(raw.decode() if isinstance(raw, bytes) else str(raw)),
                age_seconds=_number(client.get("age", "")),
                idle_seconds=_number(client.get("idle", "")),
            )
        )
    return sorted(workers, key=lambda w: w.name)


async def oldest_waiting(app: App, queues: list[str]) -> dict[str, float | None]:
    """Per queue, seconds since its next job to start (the oldest of ``wait``, ``paused``
    and the first of ``prioritized``) became due: created, plus its delay if it had one."""
    config = app.config
    prefix = config.bull_prefix
    client = await reachable_client(config.redis_settings("bull"))
    try:
        heads = client.pipeline(transaction=False)
        for queue in queues:
            heads.lindex(keys.queue_key(prefix, queue, "wait"), -1)
            heads.lindex(keys.queue_key(prefix, queue, "paused"), -1)
            heads.zrange(keys.queue_key(prefix, queue, "prioritized"), 0, 0)
        found = await bounded(config, "read the waiting jobs", heads.execute())
        reads = client.pipeline(transaction=False)
        owners: list[str] = []
        for index, queue in enumerate(queues):
            wait, paused, prioritized = found[3 * index : 3 * index + 3]
            for job_id in [wait, paused, *prioritized]:
                if job_id is not None:
                    reads.hmget(keys.job_key(prefix, queue, str(job_id)), ["timestamp", "delay"])
                    owners.append(queue)
        stamps = await bounded(config, "read the waiting jobs", reads.execute()) if owners else []
    finally:
        await client.aclose()
    ages: dict[str, float | None] = dict.fromkeys(queues)
    now = time.time()
    for queue, (stamp, delay) in zip(owners, stamps, strict=True):
        created, wait = _number(stamp or ""), _number(delay or "0") or 0
        if created is not None:
            age = max(0.0, now - (created + wait) / 1000)
            ages[queue] = max(age, ages[queue] or 0.0)
    return ages


async def lost_counts(app: App, queues: list[str]) -> dict[str, int]:
    """Per queue, how many finished jobs left Redis unrecorded (the recorders' count)."""
    config = app.config
    client = await reachable_client(config.redis_settings("bull"))
    try:
        found = {}
        for queue in queues:
            lost = await bounded(
                config, "read the lost jobs", read_lost(client, config.bull_prefix, queue)
            )
            found[queue] = lost.total
        return found
    finally:
        await client.aclose()


async def queues_overview(app: App) -> list[QueueOverview]:
    """Every queue of `list_queues`, with its workers, oldest waiting job and lost jobs."""
    infos = await list_queues(app)
    ages = await oldest_waiting(app, [info.queue for info in infos])
    lost = await lost_counts(app, [info.queue for info in infos])
    found = []
    for info in infos:
        try:
            workers, error = await queue_workers(app, info.queue), None
        except QueueUnavailable:
            raise
        except Exception as exc:  # an error reply (no permission for CLIENT LIST...)
            workers, error = [], str(exc) or type(exc).__name__
        found.append(
            QueueOverview(info, workers, error, ages.get(info.queue), lost.get(info.queue, 0))
        )
    return found
