"""``bullworker queues drain|clean|obliterate``: removing a queue's jobs in bulk.

As BullMQ's own ``drain``, ``clean`` and ``obliterate`` (Node users know them),
with one difference: nothing leaves the history silently. On a recorded queue
(`bullworker.ops.finished.is_recorded`) finished jobs are written to ``_jobs``
before they are removed, and every outcome says how many jobs were removed that
never ran (waiting, prioritized, delayed: they have no row) and how many
finished jobs were removed without a row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.durations import parse_duration
from bullworker.core.status import Status
from bullworker.ops.finished import Recorded, record_and_remove_older
from bullworker.ops.inspect import OpsError, app_store, iso
from bullworker.ops.queues import COUNTED, QueueTarget

#: What ``clean`` takes: finished jobs by when they finished, others by when they were created.
CLEAN_STATES = ("completed", "failed", "delayed", "wait")
#: Jobs that never ran (``wait`` also cleans the prioritized ones: both are waiting).
UNSTARTED = ("waiting", "prioritized", "delayed")


# --------------------------------------------------------------------------- drain


@dataclass(frozen=True, slots=True)
class DrainOutcome:
    """What ``drain`` removed, per state (counted before and after), and what is left."""

    queue: str
    delayed: bool
    removed: dict[str, int]
    left: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "delayed": self.delayed,
            "removed": dict(self.removed),
            "left": dict(self.left),
            "ran": False,
            "recorded": 0,
        }

    def describe(self) -> str:
        removed = _per_state(self.removed)
        text = f"drained queue {self.queue}: removed {removed} without running them (no _jobs rows)"
        if self.left.get("delayed"):
            why = "job schedulers' next runs" if self.delayed else "--delayed removes them too"
            text += f"; {self.left['delayed']} delayed job(s) left ({why})"
        return text


def _per_state(counts: dict[str, int]) -> str:
    """``3 waiting, 1 delayed job(s)``, or ``no jobs``."""
    parts = [f"{count} {state}" for state, count in counts.items() if count]
    return f"{', '.join(parts)} job(s)" if parts else "no jobs"


async def drain_queue(app: App, name: str, *, delayed: bool = False) -> DrainOutcome:
    """Remove the queue's waiting and prioritized jobs (and delayed ones with ``delayed``),
    as BullMQ's ``drain``: none of them ran, none gets a ``_jobs`` row. The next runs of job
    schedulers (cron) stay. Counts are taken just before and after."""
    async with QueueTarget(app, name) as target:
        before = await target.counts(*UNSTARTED)
        jobs = sum(before.values())
        await target.call("drain", target.bull.drain(delayed), jobs=jobs)
        after = await target.counts(*UNSTARTED)
    states = UNSTARTED if delayed else UNSTARTED[:2]
    removed = {state: max(0, before[state] - after[state]) for state in states}
    return DrainOutcome(queue=name, delayed=delayed, removed=removed, left=after)


# --------------------------------------------------------------------------- clean


@dataclass(frozen=True, slots=True)
class CleanOutcome:
    """What ``clean`` removed: jobs of ``state`` older than ``cutoff``, at most ``limit``."""

    queue: str
    state: str
    cutoff: datetime
    limit: int | None
    removed: int
    #: Finished jobs: how many got a ``_jobs`` row first, and how many did not.
    recorded: int = 0
    unrecorded: int = 0
    #: Finished jobs left in Redis because they changed meanwhile (the recorder takes them).
    kept: int = 0
    recording: bool = False

    @property
    def finished(self) -> bool:
        return self.state in keys.FINISHED_SETS

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "state": self.state,
            "cutoff": iso(self.cutoff),
            "limit": self.limit,
            "removed": self.removed,
            "ran": self.finished,
            "recording": self.recording,
            "recorded": self.recorded,
            "unrecorded": self.unrecorded,
            "kept": self.kept,
        }

    def describe(self) -> str:
        when = "finished" if self.finished else "created"
        text = (
            f"removed {self.removed} {self.state} job(s) of queue {self.queue} {when} before "
            f"{iso(self.cutoff)}"
        )
        if not self.removed:
            text = f"{text} (none was older)"
        elif not self.finished:
            return f"{text}, without running them (no _jobs rows)"
        elif self.recording:
            text += ", each recorded in _jobs first"
        else:
            text += f"; {self.unrecorded} of them NOT recorded in _jobs (the queue is not recorded)"
        if self.kept:
            text += f"; {self.kept} left in Redis (changed meanwhile; the recorder takes them)"
        return text


async def clean_queue(
    app: App,
    name: str,
    *,
    state: str,
    older_than: str | timedelta,
    limit: int | None = None,
    now: datetime | None = None,
) -> CleanOutcome:
    """Remove the jobs of ``state`` (`CLEAN_STATES`) older than ``older_than``, at most
    ``limit``: as BullMQ's ``clean``, finished jobs by when they finished, waiting and
    delayed ones by when they were created (``wait`` also takes prioritized jobs). Finished
    jobs of a recorded queue are recorded first; the next runs of job schedulers stay."""
    state = "wait" if state == "waiting" else state
    if state not in CLEAN_STATES:
        raise OpsError(f"state must be one of {', '.join(CLEAN_STATES)}, got {state!r}")
    if limit is not None and limit < 1:
        raise OpsError("limit must be at least 1")
    age = parse_duration(older_than) if isinstance(older_than, str) else older_than
    cutoff = (now or datetime.now(UTC)) - age
    grace_ms = max(0, round(age.total_seconds() * 1000))
    outcome = CleanOutcome(queue=name, state=state, cutoff=cutoff, limit=limit, removed=0)
    async with QueueTarget(app, name) as target:
        if state in keys.FINISHED_SETS and await target.recorded():
            cutoff_ms = round(cutoff.timestamp() * 1000)
            status: Status = "completed" if state == "completed" else "failed"
            async with app_store(app.config) as store:
                done = await record_and_remove_older(
                    app.config, target.client, store, name, status, cutoff_ms=cutoff_ms, limit=limit
                )
            recorded = done.removed
            return replace(
                outcome, removed=recorded, recorded=recorded, kept=done.kept, recording=True
            )
        removed = 0
        for bull_state in ("wait", "prioritized") if state == "wait" else (state,):
            left = 0 if limit is None else limit - removed
            if limit is not None and left <= 0:
                break
            jobs = await target.counts("waiting" if bull_state == "wait" else bull_state)
            ids = await target.call(
                "clean", target.bull.clean(grace_ms, left, bull_state), jobs=sum(jobs.values())
            )
            removed += len(ids)
    finished = state in keys.FINISHED_SETS
    return replace(outcome, removed=removed, unrecorded=removed if finished else 0)


# --------------------------------------------------------------------------- obliterate


@dataclass(frozen=True, slots=True)
class ObliterateOutcome:
    """What ``obliterate`` removed, and the fate of the finished jobs."""

    queue: str
    #: Jobs per state the obliterate itself removed (taken just before it).
    removed: dict[str, int]
    schedulers: int
    recording: bool
    #: Finished jobs recorded in ``_jobs``, then removed, before the queue went.
    recorded: int = 0
    #: Finished jobs removed without a row (the queue is not recorded, or they changed).
    unrecorded: int = 0
    #: Jobs removed while they ran (``force``): their workers cannot finish them.
    running: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "removed": dict(self.removed),
            "schedulers": self.schedulers,
            "recording": self.recording,
            "recorded": self.recorded,
            "unrecorded": self.unrecorded,
            "running": self.running,
            "paused": False,
        }

    def describe(self) -> str:
        text = f"obliterated queue {self.queue}"
        if self.recorded:
            text += f": {self.recorded} finished job(s) recorded in _jobs and removed, then"
        text += f": removed {_per_state(self.removed)}"
        if self.schedulers:
            text += f" and {self.schedulers} job scheduler(s)"
        unstarted = sum(self.removed.get(s, 0) for s in UNSTARTED)
        if unstarted:
            text += f"; {unstarted} never ran (no _jobs rows)"
        if self.unrecorded:
            text += f"; {self.unrecorded} finished job(s) NOT recorded in _jobs"
        if self.running:
            text += f"; {self.running} removed while running (--force; not recorded)"
        return text


async def obliterate_queue(app: App, name: str, *, force: bool = False) -> ObliterateOutcome:
    """Remove the queue and everything of it from Redis: jobs, job schedulers, its state.

    Refused (nothing touched) while jobs run, unless ``force``. On a recorded queue the
    finished jobs are recorded first; the queue is paused for the last look, so that no
    job starts in between. If BullMQ still refuses, the queue is resumed again (unless it
    was paused before). It is not paused afterwards: its state went with it.
    """
    async with QueueTarget(app, name) as target:
        first = await target.counts("active")
        if first["active"] and not force:
            raise running_error(name, first["active"])
        was_paused = await target.paused()
        recording = await target.recorded()
        recorded = await _record_finished(target) if recording else Recorded()
        if not was_paused:
            await target.call("pause", target.bull.pause())
        try:
            if recording:  # what finished meanwhile
                recorded += await _record_finished(target)
            last = await target.counts()
            if last["active"] and not force:
                raise running_error(name, last["active"])
            schedulers = await target.call(
                "count the job schedulers", target.bull.getJobSchedulersCount()
            )
            await target.call("obliterate", target.bull.obliterate(force), jobs=sum(last.values()))
        except BaseException as exc:
            if not was_paused:
                await target.call("resume", target.bull.resume())
            if isinstance(exc, Exception) and "Cannot obliterate" in str(exc):
                raise OpsError(f"could not obliterate queue {name}: {exc}") from None
            raise
    return ObliterateOutcome(
        queue=name,
        removed={state: last[state] for state in COUNTED if last[state]},
        schedulers=int(schedulers),
        recording=recording,
        recorded=recorded.removed,
        unrecorded=last["completed"] + last["failed"],
        running=last["active"],
    )


def running_error(name: str, active: int) -> OpsError:
    return OpsError(
        f"queue {name} has {active} running job(s); obliterate removes them too only with "
        "--force (their workers then cannot finish them, and they are not recorded): wait for "
        "them, or `bullworker jobs cancel` them"
    )


async def _record_finished(target: QueueTarget) -> Recorded:
    """Record and remove every finished job of the queue (for ``obliterate``)."""
    done = Recorded()
    async with app_store(target.config) as store:
        for status in keys.FINISHED_SETS:
            done += await record_and_remove_older(
                target.config, target.client, store, target.name, status
            )
    return done
