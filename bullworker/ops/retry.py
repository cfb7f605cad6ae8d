"""``bullworker retry``: queue failed jobs again, once each.

A retry gets a job id derived from the failed row (`retry_job_id`), so the same
failure always maps to the same new job. Before queueing, the retry looks for
that job in Redis and then for a recorded row naming the failure in
``retryOf``; the recorder writes the row before it removes the job from Redis,
so checking in that order never misses a retry that ran. Two ``retry`` commands
racing each other add the same id, which BullMQ keeps once. ``again`` queues a
further retry with a fresh id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bullworker.app import App
from bullworker.config.settings import AppConfig
from bullworker.core.errors import BullworkerError, QueueUnavailable
from bullworker.history.store import JobRecord, JobStore
from bullworker.ops.inspect import OpsError, check_job_id, failure_reason, iso, list_jobs
from bullworker.ops.live import failed_in_redis, failed_jobs_in_redis
from bullworker.producer import WorkerService
from bullworker.transport.probe import check_reachable


@dataclass(frozen=True, slots=True)
class Retry:
    """One failed job to queue again.

    ``new_id`` is the retry's job id once queued, or that of an earlier retry
    when ``earlier`` is set (nothing was queued then); ``error`` if it could not
    be queued.
    """

    original: JobRecord
    new_id: str | None = None
    error: str | None = None
    earlier: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.original.id,
            "queue": self.original.queue,
            "name": self.original.name,
            "failed": iso(self.original.completed_at),
            "reason": failure_reason(self.original),
            "newId": None if self.earlier else self.new_id,
            "retriedAs": self.new_id if self.earlier else None,
            "error": self.error,
        }


def retry_job_id(record: JobRecord) -> str:
    """The job id of the retry of one failed row: the same row always gives the same id.

    A hash, because a BullMQ custom id may not contain ``:`` and the failed
    job's own id may (cron runs: ``repeat:...``).
    """
    created_ms = round(record.created_at.timestamp() * 1000)
    key = f"{record.queue}\0{record.queue_id}\0{created_ms}\0{record.attempt}"
    return "retry-" + hashlib.sha256(key.encode()).hexdigest()[:20]


async def select_failed(
    store: JobStore,
    config: AppConfig,
    *,
    job_id: str | None = None,
    queue: str | None = None,
    name: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    queues: Sequence[str] = (),
) -> list[JobRecord]:
    """The failed jobs to retry: the newest failed run of ``job_id``, or those matching.

    ``job_id`` is ``<queue>:<jobId>``, or a bare ``<jobId>`` of ``BULL_QUEUE``.
    ``_jobs`` first; a job that failed but is not recorded (yet, or at all with
    ``RECORD_JOBS=false``) is found in Redis. Without recording, the filters
    read the failed sets of ``queue`` (else ``queues``) in Redis.
    """
    if job_id is not None:
        job_id = check_job_id(job_id, config.bull_queue)
        rows = await store.get(job_id)
        failed = [row for row in rows if row.status == "failed"]
        if failed:
            return failed[:1]
        in_redis = await failed_in_redis(config, job_id)
        if in_redis is not None:
            return [in_redis]
        if rows:
            raise OpsError(
                f"{job_id} did not fail (it {rows[0].status}); only failed jobs are retried"
            )
        raise OpsError(f"no failed job {job_id} in _jobs or in Redis")
    if queue is None and name is None and since is None:
        raise OpsError("choose the failed jobs: --id, or at least one of --queue, --name, --since")
    if not config.record_jobs:
        targets = [queue] if queue is not None else list(queues)
        return await failed_jobs_in_redis(config, targets, name=name, since=since, limit=limit)
    return await list_jobs(store, queue=queue, name=name, status="failed", since=since, limit=limit)


async def earlier_retry(store: JobStore, service: WorkerService, record: JobRecord) -> str | None:
    """The job id of a retry of this failure already queued or recorded, else None."""
    job_id = retry_job_id(record)
    if await service.job_state(record.queue, job_id) is not None:
        return job_id
    for row in await store.retries_of(record.id):  # newest first
        if row.created_at >= record.completed_at:  # not a retry of an older run of this id
            return row.queue_id
    return None


async def retry_jobs(
    app: App,
    store: JobStore,
    records: Sequence[JobRecord],
    *,
    dry_run: bool = False,
    again: bool = False,
) -> list[Retry]:
    """Queue each failed job again, same name, data and queue, with ``retryOf`` = its id.

    A failure already retried is reported with its earlier retry's id and not
    queued again, unless ``again``. A name the app does not register is queued
    as is (for a consumer elsewhere). Jobs that cannot be queued (e.g. data the
    job no longer accepts) are reported with their error; an unreachable Redis
    raises QueueUnavailable.
    """
    done: list[Retry] = []
    service = app.worker_service
    if records:
        await check_reachable(app.config.redis_settings("bull"))
    try:
        for record in records:
            earlier = None if again else await earlier_retry(store, service, record)
            if earlier is not None:
                done.append(Retry(record, new_id=earlier, earlier=True))
                continue
            if dry_run:
                done.append(Retry(record))
                continue
            opts: dict[str, Any] = {"retryOf": record.id}
            if not again:
                opts["jobId"] = retry_job_id(record)
            try:
                new_id = await service.queue_job_by_name(
                    record.name, record.data, queue=record.queue, force=True, **opts
                )
            except QueueUnavailable:
                raise
            except BullworkerError as exc:
                done.append(Retry(record, error=str(exc)))
            else:
                done.append(Retry(record, new_id=new_id))
    finally:
        await service.close()
    return done
