"""``bullworker jobs cancel``: stop one job, whether it waits or runs, wherever it runs.

- A job that has not started (waiting, prioritized, delayed) is removed from
  Redis. With recording on, its ``_jobs`` row (status ``cancelled``, result
  ``{"reason": "JobCancelled: <reason>", "stack": []}``) is written first: if
  that fails, the job stays. The removal then happens only if the job still
  has not started, in one atomic call (`remove_unstarted`); a worker that took
  it in between gets a cancel request instead, and the row is taken back (the
  recorder writes the job's own row when it ends).
- A running job gets a cancel request (`bullworker.runtime.cancel`), which
  reaches the runner holding it in whatever process or host; its handler is
  interrupted, it fails without retries with ``"JobCancelled: <reason>"`` and
  is recorded ``cancelled``. `cancel_job` waits up to ``wait`` seconds to tell
  how it ended.
- A finished job, an unknown job or queue: `OpsError`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

import redis.asyncio as aioredis

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.core.status import CANCELLED_PREFIX, failed_status
from bullworker.history.hashes import to_record
from bullworker.history.store import JobRecord, JobStore
from bullworker.ops.inspect import OpsError, app_store, queue_in_redis
from bullworker.runtime.cancel import CancelRequest, send_cancel_request, withdraw_cancel_request
from bullworker.transport.bullmq_compat.removal import remove_unstarted
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client

DEFAULT_REASON = "cancelled by user"
#: Seconds `cancel_job` waits by default for a running job to end.
DEFAULT_WAIT = 5.0
#: BullMQ states of a job that has not started.
UNSTARTED = ("waiting", "prioritized", "delayed", "paused")
_POLL = 0.1

Ended = Literal["cancelled", "completed", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What ``cancel_job`` found and did.

    ``state`` is the job's BullMQ state when it was found. ``action`` is
    ``removed`` (it had not started) or ``requested`` (it ran: a cancel request
    was sent to ``listeners`` runners). ``ended`` says how a running job ended
    within the wait (``unknown`` when it left Redis and no row says how), None
    if it still ran.
    """

    queue: str
    job_id: str
    name: str
    state: str
    reason: str
    action: Literal["removed", "requested"]
    #: Whether a ``cancelled`` row was written to ``_jobs`` (for a removed job).
    recorded: bool = False
    #: Whether recording is on (``RECORD_JOBS``): a running job is then recorded by the runner.
    recording: bool = True
    listeners: int | None = None
    ended: Ended | None = None
    waited: float = 0.0
    #: The worker that ran it (BullMQ's ``processedBy``: ``<host>:<pid>`` for a bullworker runner).
    processed_by: str | None = None

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.job_id}"

    @property
    def cancelled(self) -> bool:
        """Whether the job is cancelled now: removed, or ended cancelled."""
        return self.action == "removed" or self.ended == "cancelled"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "jobId": self.job_id,
            "name": self.name,
            "state": self.state,
            "reason": f"{CANCELLED_PREFIX} {self.reason}",
            "action": self.action,
            "recorded": self.recorded,
            "listeners": self.listeners,
            "ended": self.ended,
            "waitedSeconds": round(self.waited, 3),
            "processedBy": self.processed_by,
            "cancelled": self.cancelled,
        }

    def describe(self) -> str:
        """One line for people."""
        if self.action == "removed":
            head = f"{self.id} ({self.name}) was {self.state}: removed from Redis"
            if self.recorded:
                return f"{head}, recorded as cancelled"
            return f"{head} (not recorded: RECORD_JOBS is false)"
        where = f" on {self.processed_by}" if self.processed_by else ""
        head = f"{self.id} ({self.name}) was running{where}: "
        if self.listeners:
            head += f"cancel request sent to {self.listeners} runner(s)"
        else:
            head += "cancel request left in Redis (no runner is listening now)"
        if self.ended == "cancelled":
            return f"{head}; it stopped (failed as cancelled, without retries)"
        if self.ended is not None:
            return f"{head}; it ended {self.ended} before it could stop"
        if not self.waited:
            return f"{head}; not waiting for it to stop"
        return (
            f"{head}; still running after {self.waited:g} s (the request stands: an async "
            "handler stops at its next await, a sync one when it checks job.cancelled)"
        )


async def cancel_job(
    config: AppConfig,
    queue: str,
    job_id: str,
    reason: str = DEFAULT_REASON,
    *,
    wait: float = DEFAULT_WAIT,
) -> CancelOutcome:
    """Cancel the job ``job_id`` of ``queue`` (see the module's doc); OpsError if it cannot be."""
    reason = " ".join(str(reason).split()) or DEFAULT_REASON
    if not queue or not job_id:
        raise OpsError("cancel needs a queue and a job id: <queue>:<jobId>")
    if wait < 0:
        raise OpsError(f"wait must be 0 or more seconds, got {wait:g}")
    client = await reachable_client(config.redis_settings("bull"))
    bull = open_queue(config, queue)
    job = _Job(config, client, bull, queue, job_id)
    try:
        for _ in range(3):  # a job that starts (or ends) meanwhile is looked at again
            state = await job.read()
            if state in UNSTARTED:
                outcome = await _remove(job, state, reason)
                if outcome is not None:
                    return outcome
            elif state == "active":
                return await _request(job, reason, wait)
            else:
                await job.refuse(state)
        raise OpsError(f"{job.id} keeps changing state; try again")
    finally:
        await client.aclose()
        await close_queue(bull, config.redis_timeout)


class _Job:
    """The job as cancel_job reads it in Redis."""

    def __init__(
        self, config: AppConfig, client: aioredis.Redis, bull: Any, queue: str, job_id: str
    ) -> None:
        self.config = config
        self.client = client
        self.bull = bull
        self.queue = queue
        self.job_id = job_id
        self.id = f"{queue}:{job_id}"
        self.key = keys.job_key(config.bull_prefix, queue, job_id)
        self.raw: dict[str, str] = {}
        self.logs: list[str] = []

    async def read(self) -> str:
        """Its hash, last log lines and BullMQ state (``unknown`` when it is not there)."""
        what = f"read job {self.id}"
        raw = await bounded(self.config, what, self.client.hgetall(self.key))
        self.raw = {str(k): str(v) for k, v in raw.items()}
        if not self.raw:
            return "unknown"
        if self.config.record_jobs and self.config.jobs_log_lines:
            logs_key = keys.job_logs_key(self.config.bull_prefix, self.queue, self.job_id)
            lines = self.client.lrange(logs_key, -self.config.jobs_log_lines, -1)
            self.logs = [str(line) for line in await bounded(self.config, what, lines)]
        return str(await bounded(self.config, what, self.bull.getJobState(self.job_id)))

    @property
    def name(self) -> str:
        return self.raw.get("name") or "(unnamed)"

    @property
    def timestamp(self) -> int | None:
        stamp = self.raw.get("timestamp", "")
        return int(stamp) if stamp.isdigit() else None

    async def refuse(self, state: str) -> None:
        """Raise the OpsError that says why a job in ``state`` cannot be cancelled."""
        if state in keys.FINISHED_SETS:
            ended = failed_status(self.raw.get("failedReason")) if state == "failed" else state
            raise OpsError(f"{self.id} already finished ({ended})")
        if state == "waiting-children":
            raise OpsError(
                f"{self.id} is a parent in a flow waiting for its children; cancel the children"
            )
        if state != "unknown":
            raise OpsError(f"{self.id} is {state}; only waiting, delayed and running jobs cancel")
        if self.raw:
            raise OpsError(f"{self.id} is in none of its queue's lists; nothing runs it")
        if not await queue_in_redis(self.client, self.config, self.queue):
            raise OpsError(
                f"no queue {self.queue!r} in Redis (prefix {self.config.bull_prefix!r}); "
                "check the queue name and BULL_PREFIX"
            )
        if self.config.record_jobs:
            async with app_store(self.config) as store:
                rows = await store.get(self.id)
            if rows:
                raise OpsError(f"{self.id} already finished ({rows[0].status}); it is in _jobs")
        raise OpsError(f"no job {self.id} in Redis")


async def _remove(job: _Job, state: str, reason: str) -> CancelOutcome | None:
    """Record (if on), then remove a job that has not started; None if it started meanwhile."""
    config = job.config
    prefix, queue = config.bull_prefix, job.queue
    what = f"cancel job {job.id}"
    check = remove_unstarted(job.client, prefix, queue, job.job_id, check=True)
    removable = await bounded(config, what, check)
    if removable == "scheduler":
        raise OpsError(
            f"{job.id} is the next run of a job scheduler (cron); cancelling it would end the "
            "schedule: remove the schedule instead"
        )
    if removable != "removable":
        return None
    outcome = CancelOutcome(
        queue=queue, job_id=job.job_id, name=job.name, state=state, reason=reason,
        action="removed", recording=config.record_jobs,
    )  # fmt: skip
    remove = remove_unstarted(job.client, prefix, queue, job.job_id)
    if not config.record_jobs:
        return outcome if await bounded(config, what, remove) == "removed" else None
    record = cancelled_record(queue, job.job_id, job.raw, job.logs, reason)
    async with app_store(config) as store:
        if not await store.insert_records([record]):
            await _check_row(store, record)
        if await bounded(config, what, remove) == "removed":
            return replace(outcome, recorded=True)
        await store.delete_record(record)  # a worker took it: its runner records how it ends
    return None


async def _check_row(store: JobStore, record: JobRecord) -> None:
    """A row with this job's key exists: fine if it is this cancel's (written by an earlier
    try that could not remove the job), else OpsError."""
    for row in await store.get(record.id):
        if (row.created_at, row.attempt) == (record.created_at, record.attempt):
            if row.status == "cancelled":
                return
            raise OpsError(
                f"{record.id}: _jobs already has a {row.status} row of this run; nothing removed"
            )


def cancelled_record(
    queue: str, job_id: str, raw: dict[str, str], logs: list[str], reason: str
) -> JobRecord:
    """The ``_jobs`` row of a job cancelled before it started (it finished now)."""
    fields = {
        **raw,
        "failedReason": f"{CANCELLED_PREFIX} {reason}",
        "stacktrace": "[]",
        "finishedOn": str(int(time.time() * 1000)),
    }
    return to_record(queue, job_id, "cancelled", fields, logs)


async def _request(job: _Job, reason: str, wait: float) -> CancelOutcome:
    """Send a running job's cancel request, and wait up to ``wait`` s for the job to end."""
    config = job.config
    request = CancelRequest(
        queue=job.queue, id=job.job_id, reason=reason, timestamp=job.timestamp,
        at=int(time.time() * 1000),
    )  # fmt: skip
    send = send_cancel_request(job.client, config.bull_prefix, request)
    listeners = await bounded(config, f"send the cancel request of {job.id}", send)
    started = time.monotonic()
    ended = await _ended(job, wait) if wait > 0 else None
    if ended is not None and ended != "cancelled":  # it ended otherwise: the request is moot
        withdraw = withdraw_cancel_request(
            job.client, config.bull_prefix, job.queue, job.job_id, job.timestamp
        )
        await bounded(config, f"withdraw the cancel request of {job.id}", withdraw)
    return CancelOutcome(
        queue=job.queue, job_id=job.job_id, name=job.name, state="active", reason=reason,
        action="requested", recording=config.record_jobs, listeners=listeners, ended=ended,
        waited=0.0 if wait <= 0 else round(time.monotonic() - started, 3),
        processed_by=job.raw.get("pb"),
    )  # fmt: skip


async def _ended(job: _Job, wait: float) -> Ended | None:
    """How the running job ended within ``wait`` seconds, None if it still runs."""
    config = job.config
    deadline = time.monotonic() + wait
    failed_set = keys.queue_key(config.bull_prefix, job.queue, "failed")
    while True:
        fields = await bounded(
            config,
            f"read job {job.id}",
            job.client.hmget(job.key, ["timestamp", "finishedOn", "failedReason"]),
        )
        stamp, finished, reason = fields
        if stamp is None or (job.timestamp is not None and stamp != str(job.timestamp)):
            return await _recorded_end(job)  # it left Redis (recorded, or removeOnFail)
        if finished:
            in_failed = await bounded(
                config, f"read job {job.id}", job.client.zscore(failed_set, job.job_id)
            )
            return failed_status(str(reason or "")) if in_failed is not None else "completed"
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(_POLL)


async def _recorded_end(job: _Job) -> Ended:
    """How a job that left Redis ended, from its ``_jobs`` row (the recorder writes it first)."""
    if not job.config.record_jobs:
        return "unknown"
    async with app_store(job.config) as store:
        rows = await store.get(job.id)
    for row in rows:
        if job.timestamp is None or round(row.created_at.timestamp() * 1000) == job.timestamp:
            return row.status
    return "unknown"
