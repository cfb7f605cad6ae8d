"""What of a queue's finished jobs is not in ``_jobs``: not recorded yet, or lost.

A finished job waits in Redis until the recorder writes it (the backlog, and
its age: the recording lag); once recorded it may stay in Redis for the keep
window, marked with `keys.RECORDED_FIELD`. A finished job that left Redis before
it was recorded (another producer's ``removeOnComplete``/``removeOnFail``) is
lost to ``_jobs``: the recorder counts it in `keys.lost_key`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.history.script_calls import recording_backlog_counts

#: Members of a finished set `recording_backlog` looks at: more than the default keep window
#: (6,000), about 15 ms of Lua at most.
BACKLOG_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Backlog:
    """A queue's finished jobs in Redis not recorded yet, and how long the oldest waits."""

    completed: int = 0
    failed: int = 0
    #: Seconds since the oldest of them finished (0 when none waits).
    lag: float = 0.0

    @property
    def total(self) -> int:
        return self.completed + self.failed


async def recording_backlog(redis: aioredis.Redis, prefix: str, queue: str) -> Backlog:
    """The jobs of ``queue``'s finished sets that are not recorded for their current run.

    One script call looks at the oldest `BACKLOG_CAP` members of each set (those kept
    after recording are among them); newer ones, if any, count as not recorded yet.
    """
    reply = await recording_backlog_counts(
        redis,
        [keys.queue_key(prefix, queue, status) for status in keys.FINISHED_SETS],
        keys.job_key(prefix, queue, ""),
        keys.RECORDED_FIELD,
        BACKLOG_CAP,
    )
    completed, oldest_completed, failed, oldest_failed = reply
    oldest = [float(score) for score in (oldest_completed, oldest_failed) if score]
    lag = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
    return Backlog(int(completed), int(failed), lag)


async def recording_lag(redis: aioredis.Redis, prefix: str, queue: str) -> float:
    """Seconds since the oldest finished job of ``queue`` not recorded yet finished (0 if none)."""
    return (await recording_backlog(redis, prefix, queue)).lag


@dataclass(frozen=True, slots=True)
class LostJobs:
    """The finished jobs of a queue that left Redis before they were recorded, so have no
    ``_jobs`` row: counted by the recorder leader since the count was last reset."""

    queue: str
    completed: int = 0
    failed: int = 0
    #: The last one counted: its job id, ``completed`` or ``failed``, and when it was counted.
    last_job: str | None = None
    last_status: str | None = None
    last_at: datetime | None = None

    @property
    def total(self) -> int:
        return self.completed + self.failed

    def to_dict(self) -> dict[str, Any]:
        at = self.last_at
        return {
            "queue": self.queue,
            "completed": self.completed,
            "failed": self.failed,
            "total": self.total,
            "lastJob": self.last_job,
            "lastStatus": self.last_status,
            "lastAt": None if at is None else at.isoformat(timespec="milliseconds")[:-6] + "Z",
        }


def _int(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() else 0


async def read_lost(redis: aioredis.Redis, prefix: str, queue: str) -> LostJobs:
    """The lost-jobs count of ``queue`` (all zero when none was ever lost)."""
    raw = await redis.hgetall(keys.lost_key(prefix, queue))
    found = {str(k): str(v) for k, v in raw.items()}
    at = found.get("lastAt")
    return LostJobs(
        queue=queue,
        completed=_int(found.get("completed")),
        failed=_int(found.get("failed")),
        last_job=found.get("lastJob"),
        last_status=found.get("lastStatus"),
        last_at=datetime.fromtimestamp(int(at) / 1000, UTC) if at and at.isdigit() else None,
    )


async def reset_lost(redis: aioredis.Redis, prefix: str, queue: str) -> bool:
    """Forget the lost-jobs count of ``queue`` (after its producer is fixed); True if there
    was one."""
    return bool(await redis.delete(keys.lost_key(prefix, queue)))
