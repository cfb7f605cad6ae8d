"""Operations on a running system: queue stats, the ``_jobs`` history, retention.

Every function returns plain dataclasses (or `JobRecord` rows) with a ``to_dict()``
for JSON; ``bullworker stats|jobs|prune`` print them (``retry`` lives in `retry`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio as aioredis

from bullworker.app import App
from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.core.durations import parse_duration
from bullworker.core.errors import OpsError as OpsError
from bullworker.core.status import STATUSES
from bullworker.history.backlog import LostJobs, read_lost, recording_backlog, reset_lost
from bullworker.history.store import JobRecord, JobStore, store_for
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client

T = TypeVar("T")

#: Rows one ``bullworker prune`` statement deletes by default (a short transaction each).
PRUNE_BATCH_SIZE = 1000


def iso(moment: datetime | None) -> str | None:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds), or None."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _ms(delta: timedelta | None) -> int | None:
    return None if delta is None else round(delta.total_seconds() * 1000)


def app_queues(app: App) -> list[str]:
    """The queues of the app's jobs, ``WORKER_QUEUES`` and ``RECORD_QUEUES`` (``BULL_QUEUE`` if none)."""
    config = app.config
    found = set(app.registry.queues(config.bull_queue)) | set(config.consumed_queues or [])
    found |= set(config.record_only_queues)
    return sorted(found) or [config.bull_queue]


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """The runner recording a queue, from its leader-info hash."""

    host: str | None
    pid: int | None
    since: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "since": iso(self.since)}

    def describe(self) -> str:
        return f"{self.host or '?'} pid {self.pid or '?'} since {iso(self.since) or '?'}"


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts of one queue's jobs in Redis, its recorder leader and the recording lag."""

    queue: str
    waiting: int
    active: int
    delayed: int
    failed: int
    #: Completed jobs in Redis: not recorded yet, or recorded and kept for the keep window.
    completed: int
    leader: LeaderInfo | None
    #: Seconds since the oldest finished job not recorded yet finished (0 when none waits).
    lag: float
    #: Paused with BullMQ's pause (``bullworker queues pause``): no worker starts its jobs.
    paused: bool = False
    #: Finished jobs in Redis (of ``completed`` and ``failed``) not recorded in ``_jobs`` yet.
    unrecorded: int = 0
    #: Finished jobs that left Redis before they were recorded: they have no ``_jobs`` row.
    lost: LostJobs | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "paused": self.paused,
            "waiting": self.waiting,
            "active": self.active,
            "delayed": self.delayed,
            "failed": self.failed,
            "completed": self.completed,
            "unrecorded": self.unrecorded,
            "lost": _lost_dict(self.lost or LostJobs(self.queue)),
            "leader": None if self.leader is None else self.leader.to_dict(),
            "lag_seconds": round(self.lag, 3),
        }


def _lost_dict(lost: LostJobs) -> dict[str, Any]:
    found = lost.to_dict()
    del found["queue"]
    return found


async def read_leader(client: aioredis.Redis, prefix: str, queue: str) -> LeaderInfo | None:
    """The recorder leader of ``queue``, or None when no runner holds its lock."""
    if not await client.exists(keys.leader_key(prefix, queue)):
        return None
    raw = await client.hgetall(keys.leader_info_key(prefix, queue))
    info = {str(k): str(v) for k, v in raw.items()}
    pid = info.get("pid", "")
    try:
        since: datetime | None = datetime.fromtimestamp(float(info["since"]), tz=UTC)
    except (KeyError, ValueError, OverflowError):
        since = None
    return LeaderInfo(host=info.get("host"), pid=int(pid) if pid.isdigit() else None, since=since)


async def queue_stats(app: App) -> list[QueueStats]:
    """One `QueueStats` per queue of the app (see `app_queues`)."""
    config = app.config
    client = await reachable_client(config.redis_settings("bull"))
    found: list[QueueStats] = []
    try:
        for name in app_queues(app):
            queue = open_queue(config, name)
            try:
                counts: dict[str, int] = await bounded(
                    config,
                    f"count the jobs of queue {name}",
                    queue.getJobCounts(
                        "waiting", "prioritized", "active", "delayed", "failed", "completed"
                    ),
                )
                paused = await bounded(config, f"read queue {name}", queue.isPaused())
            finally:
                await close_queue(queue, config.redis_timeout)
            leader = await bounded(
                config, "read the leader", read_leader(client, config.bull_prefix, name)
            )
            backlog = await bounded(
                config, "read the lag", recording_backlog(client, config.bull_prefix, name)
            )
            lost = await bounded(
                config, "read the lost jobs", read_lost(client, config.bull_prefix, name)
            )
            found.append(
                QueueStats(
                    queue=name,
                    waiting=counts["waiting"] + counts["prioritized"],
                    active=counts["active"],
                    delayed=counts["delayed"],
                    failed=counts["failed"],
                    completed=counts["completed"],
                    leader=leader,
                    lag=backlog.lag,
                    paused=bool(paused),
                    unrecorded=backlog.total,
                    lost=lost,
                )
            )
    finally:
        await client.aclose()
    return found


async def lost_jobs(app: App) -> list[LostJobs]:
    """Per queue of the app, the finished jobs that left Redis before they were recorded
    (another producer's ``removeOnComplete``/``removeOnFail``), as the recorders counted them."""
    config = app.config
    client = await reachable_client(config.redis_settings("bull"))
    try:
        read = [read_lost(client, config.bull_prefix, name) for name in app_queues(app)]
        return [await bounded(config, "read the lost jobs", found) for found in read]
    finally:
        await client.aclose()


async def reset_lost_jobs(app: App, queue: str) -> bool:
    """Forget the lost-jobs count of ``queue`` (once its producer is fixed); True if it had one."""
    config = app.config
    client = await reachable_client(config.redis_settings("bull"))
    try:
        reset = reset_lost(client, config.bull_prefix, queue)
        return await bounded(config, "reset the lost jobs", reset)
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- _jobs


@asynccontextmanager
async def app_store(config: AppConfig) -> AsyncIterator[JobStore]:
    """The app's ``_jobs`` store, opened (the table is created if missing) and closed."""
    try:
        store = store_for(config)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise OpsError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def check_job_id(job_id: str, default_queue: str | None = None) -> str:
    """A ``_jobs`` id is ``<queue>:<jobId>``; with ``default_queue``, a bare ``<jobId>``
    is one of that queue (``42`` -> ``default:42``)."""
    if default_queue is not None and job_id and ":" not in job_id:
        job_id = f"{default_queue}:{job_id}"
    queue, sep, rest = job_id.partition(":")
    if not (queue and sep and rest):
        raise OpsError(f"job id {job_id!r} must be <queue>:<jobId> (e.g. default:42) or <jobId>")
    return job_id


#: BullMQ keys of a queue that has been used (one is enough to know it).
_QUEUE_KEYS = ("meta", "id", "events", "wait", "active", "delayed", "prioritized", "paused",
               "completed", "failed", "repeat", "stalled-check", "marker")  # fmt: skip


async def unknown_queues(app: App, names: list[str]) -> list[str]:
    """The ``names`` that no job of the app uses and that have no keys in Redis."""
    config = app.config
    known = set(app_queues(app))
    candidates = [name for name in dict.fromkeys(names) if name not in known]
    if not candidates:
        return []
    client = await reachable_client(config.redis_settings("bull"))
    unknown = []
    try:
        for name in candidates:
            if not await queue_in_redis(client, config, name):
                unknown.append(name)
    finally:
        await client.aclose()
    return unknown


async def queue_in_redis(client: aioredis.Redis, config: AppConfig, name: str) -> bool:
    """Whether the queue ``name`` has keys in Redis (has ever been used)."""
    keys_of = [keys.queue_key(config.bull_prefix, name, s) for s in _QUEUE_KEYS]
    return bool(await bounded(config, f"look for queue {name}", client.exists(*keys_of)))


async def list_jobs(
    store: JobStore,
    *,
    queue: str | None = None,
    name: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[JobRecord]:
    """Recorded jobs matching the filters, newest first."""
    _check_status(status)
    if limit < 1:
        raise OpsError("limit must be at least 1")
    return await store.recent(queue=queue, name=name, status=status, since=since, limit=limit)


def failure_reason(record: JobRecord) -> str | None:
    """``"<ExceptionClass>: <message>"`` of a failed or cancelled row, None otherwise."""
    return record.reason


def job_summary(record: JobRecord) -> dict[str, Any]:
    """One row of ``bullworker jobs``."""
    return {
        "id": record.id,
        "name": record.name,
        "status": record.status,
        "attempt": record.attempt,
        "finished": iso(record.completed_at),
        "duration_ms": _ms(record.duration),
        "reason": failure_reason(record),
        "retryOf": record.retry_of,
    }


def job_detail(record: JobRecord) -> dict[str, Any]:
    """Everything ``bullworker jobs show`` knows of one row."""
    detail: dict[str, Any] = {
        "id": record.id,
        "queue": record.queue,
        "queueId": record.queue_id,
        "name": record.name,
        "status": record.status,
        "attempt": record.attempt,
        "data": record.data,
    }
    if record.status != "completed":  # failed or cancelled
        result = record.result if isinstance(record.result, dict) else {}
        detail["error"] = {"reason": failure_reason(record), "stack": result.get("stack") or []}
    else:
        detail["result"] = record.result
    started = record.executed_at
    # Due to start → started; never negative (producer and worker clocks may differ).
    wait = None if started is None else max(timedelta(0), started - record.should_execute_at)
    detail["timings"] = {
        "created": iso(record.created_at),
        "scheduled": iso(record.should_execute_at),
        "started": iso(started),
        "finished": iso(record.completed_at),
        "duration_ms": _ms(record.duration),
        "wait_ms": _ms(wait),
        "recorded": iso(record.recorded_at),
    }
    detail["traceId"] = record.trace_id
    detail["retryOf"] = record.retry_of
    detail["parent"] = None if record.parent is None else {"id": record.parent}
    detail["progress"] = record.progress
    detail["logs"] = record.logs or []
    detail["source"] = "_jobs"
    return detail


# --------------------------------------------------------------------------- prune


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What ``bullworker prune`` deleted, or would delete with ``dry_run``."""

    cutoff: datetime
    status: str | None
    rows: int
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "cutoff": iso(self.cutoff),
            "status": self.status,
            "rows": self.rows,
            "dryRun": self.dry_run,
        }


async def prune_jobs(
    store: JobStore,
    *,
    older_than: str | timedelta,
    status: str | None = None,
    batch_size: int = PRUNE_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    """Delete rows that finished more than ``older_than`` ago, ``batch_size`` rows at a time."""
    _check_status(status)
    if batch_size < 1:
        raise OpsError("batch size must be at least 1")
    age = parse_duration(older_than) if isinstance(older_than, str) else older_than
    cutoff = (now or datetime.now(UTC)) - age
    if dry_run:
        rows = await store.count(status=status, until=cutoff)
    else:
        rows = await store.prune(older_than=cutoff, status=status, batch_size=batch_size)
    return PruneResult(cutoff=cutoff, status=status, rows=rows, dry_run=dry_run)
