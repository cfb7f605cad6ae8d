"""bullmq's Worker with the fixes bullworker relies on.

A job hash that cannot be parsed (written by hand, or by a broken producer)
makes bullmq raise while it builds the Job, after the job was moved to
active: the job then sits there until the stalled checker returns it, fails
again, and only fails for good after ``maxStalledCount`` rounds of the lock
duration. This subclass fails such a job at once with a clear reason, and the
other jobs never notice.

Its Redis clients use bullworker's retry policy (a try at most every second
instead of bullmq's backoff up to 20 s), so the worker picks up again within
about a second of Redis coming back; a Sentinel pool is closed with it.
"""

from __future__ import annotations

import logging
from typing import Any

from bullmq import Job, UnrecoverableError, Worker

from .connection import close_sentinel_pool, use_retry_policy

log = logging.getLogger("bullworker.runner")


class MalformedJobError(UnrecoverableError):  # type: ignore[misc]
    """The job's hash in Redis cannot be read as a BullMQ job."""


class BullWorker(Worker):  # type: ignore[misc]
    """A bullmq Worker that fails malformed jobs instead of stalling on them."""

    def __init__(self, name: str, processor: Any, opts: dict[str, Any]) -> None:
        super().__init__(name, processor, opts)
        for client in (self.client, self.bclient):
            use_retry_policy(client)

    async def close(self, force: bool = False) -> None:
        try:
            await super().close(force)
        finally:
            await close_sentinel_pool(self.client)

    async def nextJobFromJobData(
        self,
        job_data: dict[str, Any] | None = None,
        job_id: str | None = None,
        limit_until: int = 0,
        delay_until: int = 0,
        token: str | None = None,
    ) -> Any:
        try:
            return await super().nextJobFromJobData(
                job_data, job_id, limit_until, delay_until, token
            )
        except (ValueError, TypeError, AttributeError) as exc:
            if not job_data or job_id is None or token is None:
                raise
            await self._fail_malformed(job_data, str(job_id), token, exc)
            return None

    async def _fail_malformed(
        self, job_data: dict[str, Any], job_id: str, token: str, exc: Exception
    ) -> None:
        name = job_data.get("name")
        reason = f"MalformedJobError: job {job_id} cannot be read ({type(exc).__name__}: {exc})"
        log.error("queue %s: %s", self.name, reason)
        job = Job(self, name if isinstance(name, str) else "(malformed)", {}, {}, job_id)
        job.token = token
        try:
            await job.moveToFailed(MalformedJobError(reason), token)
        except Exception as err:  # leave it to the stalled checker
            log.error("queue %s: could not fail malformed job %s: %s", self.name, job_id, err)
