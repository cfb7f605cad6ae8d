"""``bullworker queues promote|remove``: one job of a queue, by ``<queue>:<jobId>``.

- ``promote``: a delayed job waits to start now (BullMQ's ``job.promote()``).
- ``remove``: a job that has not started (waiting, prioritized, delayed) is removed
  atomically only if it still has not started, and never ran: it gets no ``_jobs``
  row. A finished job of a recorded queue is recorded first, then removed if
  unchanged (`bullworker.ops.finished`); of a queue that is not recorded, it is
  removed as BullMQ removes it, and the outcome says it was not recorded. A running
  job is refused (``bullworker jobs cancel`` stops it), and so is the next run of a
  job scheduler (removing it would end the schedule).

An unknown job id, or one already recorded and gone from Redis, is an `OpsError`;
so is an unknown queue (listing the queues there are).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.status import Status
from bullworker.ops.finished import record_and_remove
from bullworker.ops.inspect import OpsError, app_store, check_job_id
from bullworker.ops.queues import QueueTarget
from bullworker.transport.bullmq_compat.removal import remove_unstarted

#: BullMQ states of a job that has not started (a paused queue's jobs are ``waiting``).
UNSTARTED = ("waiting", "prioritized", "delayed", "paused")


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What ``promote`` or ``remove`` did to one job, found in BullMQ state ``state``."""

    queue: str
    job_id: str
    name: str
    state: str
    action: Literal["promoted", "removed"]
    #: Whether a ``_jobs`` row was written before the removal (a finished job, recorded queue).
    recorded: bool = False

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.job_id}"

    @property
    def ran(self) -> bool:
        return self.state in keys.FINISHED_SETS

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "jobId": self.job_id,
            "name": self.name,
            "state": self.state,
            "action": self.action,
            "ran": self.ran,
            "recorded": self.recorded,
        }

    def describe(self) -> str:
        verb = "" if self.ran else "was "  # "ops:4 (Report) failed", "ops:5 (Mail) was waiting"
        head = f"{self.id} ({self.name}) {verb}{self.state}"
        if self.action == "promoted":
            return f"{head}: promoted, it waits to start now"
        if not self.ran:
            return f"{head}: removed from Redis without running (no _jobs row)"
        if self.recorded:
            return f"{head}: recorded in _jobs, then removed from Redis"
        return f"{head}: removed from Redis, NOT recorded in _jobs (the queue is not recorded)"


def _split(app: App, job_id: str) -> tuple[str, str]:
    queue, _, queue_id = check_job_id(job_id, app.config.bull_queue).partition(":")
    return queue, queue_id


async def _read(target: QueueTarget, queue_id: str) -> tuple[str, str]:
    """The job's BullMQ state and name; OpsError if it is not in Redis (or the queue is unknown)."""
    config = target.config
    job_key = keys.job_key(config.bull_prefix, target.name, queue_id)
    name = await target.call(f"read job {queue_id}", target.client.hget(job_key, "name"))
    if name is None:
        await _missing(target, queue_id)
    state = await target.call(f"read job {queue_id}", target.bull.getJobState(queue_id))
    return str(state), str(name or "(unnamed)")


async def _missing(target: QueueTarget, queue_id: str) -> None:
    """Raise the OpsError of a job that is not in Redis."""
    await target.check()
    job_id = f"{target.name}:{queue_id}"
    if target.config.record_jobs:
        async with app_store(target.config) as store:
            rows = await store.get(job_id)
        if rows:
            raise OpsError(
                f"{job_id} is not in Redis: it finished ({rows[0].status}) and is in _jobs "
                "(`bullworker prune` deletes old rows)"
            )
    raise OpsError(f"no job {job_id} in Redis")


async def promote_job(app: App, job_id: str) -> JobOutcome:
    """Move the delayed job ``<queue>:<jobId>`` to waiting, to start now."""
    from bullmq import Job

    queue, queue_id = _split(app, job_id)
    async with QueueTarget(app, queue, check=False) as target:
        state, name = await _read(target, queue_id)
        if state != "delayed":
            raise OpsError(f"{queue}:{queue_id} is {state}; only a delayed job can be promoted")
        job = await target.call(f"read job {queue_id}", Job.fromId(target.bull, queue_id))
        try:
            await target.call(f"promote job {queue_id}", job.promote())
        except TypeError as exc:  # bullmq's error when it is no longer delayed
            raise OpsError(f"{queue}:{queue_id} could not be promoted: {exc}") from None
    return JobOutcome(queue, queue_id, name, state, "promoted")


async def remove_job(app: App, job_id: str) -> JobOutcome:
    """Remove ``<queue>:<jobId>`` from Redis (see the module's doc)."""
    queue, queue_id = _split(app, job_id)
    async with QueueTarget(app, queue, check=False) as target:
        for _ in range(3):  # a job that starts (or ends) meanwhile is looked at again
            state, name = await _read(target, queue_id)
            outcome = JobOutcome(queue, queue_id, name, state, "removed")
            if state in UNSTARTED:
                if await _remove_unstarted(target, outcome):
                    return outcome
            elif state == "active":
                raise OpsError(
                    f"{outcome.id} is running; BullMQ does not remove a running job: "
                    f"`bullworker jobs cancel {outcome.id}` stops it"
                )
            elif state in keys.FINISHED_SETS and await target.recorded():
                return await _remove_recorded(target, outcome)
            elif state in (*keys.FINISHED_SETS, "waiting-children"):
                remove = target.bull.remove(queue_id, {"removeChildren": False})
                if await target.call(f"remove job {queue_id}", remove):
                    return outcome
            else:
                raise OpsError(f"{outcome.id} is {state}; it cannot be removed")
        raise OpsError(f"{queue}:{queue_id} keeps changing state; try again")


async def _remove_unstarted(target: QueueTarget, outcome: JobOutcome) -> bool:
    """Remove the job if it still has not started; False if it started meanwhile."""
    prefix = target.config.bull_prefix
    removal = remove_unstarted(target.client, prefix, target.name, outcome.job_id)
    done = await target.call(f"remove job {outcome.job_id}", removal)
    if done == "scheduler":
        raise OpsError(
            f"{outcome.id} is the next run of a job scheduler (cron); removing it would end "
            "the schedule: remove the schedule instead"
        )
    return bool(done == "removed")


async def _remove_recorded(target: QueueTarget, outcome: JobOutcome) -> JobOutcome:
    """Record the finished job, then remove it if unchanged."""
    status: Status = "completed" if outcome.state == "completed" else "failed"
    async with app_store(target.config) as store:
        done = await record_and_remove(
            target.config, target.client, store, target.name, status, [outcome.job_id]
        )
    if done.removed:
        return replace(outcome, recorded=True)
    if done.kept:
        raise OpsError(
            f"{outcome.id} was left in Redis: it changed while it was recorded, or _jobs has "
            "another job's row with its id, createdAt and attempt; the recorder takes it from here"
        )
    raise OpsError(f"{outcome.id} left its {outcome.state} set meanwhile; try again")
