"""bullmq's Worker with the fixes bullworker relies on.

A job hash that cannot be parsed (written by hand, or by a broken producer)
makes bullmq raise while it builds the Job, after the job was moved to
active: the job then sits there until the stalled checker returns it, fails
again, and only fails for good after ``maxStalledCount`` rounds of the lock
duration. This subclass fails such a job at once with a clear reason, and the
other jobs never notice. So it does with a job whose ``attempts`` or
``backoff`` BullMQ's retry script cannot compute with (another producer's
``backoff.delay`` of ``"x"``): that script raises half-way and would drop the
job from every list.

A graceful ``close()`` finishes every job the worker has taken. bullmq's own
close waits only for the tasks running when it is called: a job whose fetch
was in flight then is moved to active in Redis and either never runs or runs
with its connection already closed, so it sits active until the stalled
check (a lock duration later) and may run twice. Node's worker waits for its
main loop; this subclass does the same.

A finished job's ``moveToFinished`` call (completed, or failed for good) also
takes the worker's next job, as Node's worker does (``fetchNext``): bullmq's
Python worker passes ``fetch_next=False`` and then makes a separate
``moveToActive`` call, a third Lua script per job. The next job goes back to
bullmq's run loop as the finished task's result, which the loop processes
like any fetched job. On a queue at its global concurrency this is also how
the worker takes the slot its job freed: BullMQ adds no marker for it.

Rate limits work as in Node's worker (:mod:`.rate_limit`), and so does a
handler's ``RateLimited``. The worker names itself as Node's does, so Node's
``Queue.getWorkers()`` and bull-board list it, and every job it takes gets
``processedBy`` (:mod:`.commands`).

Its Redis clients use bullworker's retry policy (a try at most every second
instead of bullmq's backoff up to 20 s), so the worker picks up again within
about a second of Redis coming back; a Sentinel pool is closed with it.

It keeps BullMQ's Worker events as Node's worker emits them, which bullmq's
Python worker does only in part: ``active`` (job, "waiting") once for every
job it starts, also one taken by fetch-next; ``completed`` (job, result);
``failed`` (job, error); ``progress`` (job, progress) when a job it runs calls
``job.updateProgress``; ``drained`` when a fetch finds the queue empty after
it had jobs; ``closing`` ("closing queue") and ``closed``, once each. An
exception in a listener of the events added here is reported as ``error``
instead of stranding the job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bullmq import Job, UnrecoverableError, Worker

from bullworker.core.errors import BullworkerError, PayloadError
from bullworker.core.options import check_retry_options
from bullworker.transport.bullmq_compat.commands import WorkerCommands, node_client_name
from bullworker.transport.bullmq_compat.failures import use_handler_stack, use_jitter
from bullworker.transport.bullmq_compat.rate_limit import RateLimitHandling
from bullworker.transport.connection import close_sentinel_pool, use_retry_policy

log = logging.getLogger("bullworker.runner")

# bullmq's fixed and exponential backoffs, with jitter as Node computes it.
use_jitter()


class MalformedJobError(BullworkerError, UnrecoverableError):  # type: ignore[misc]
    """The job's hash in Redis cannot be read as a BullMQ job."""


class BullWorker(RateLimitHandling, Worker):  # type: ignore[misc]
    """bullmq's Worker with fetch-next, a graceful close, malformed-job checks, Node's
    events, rate limits and client names."""

    _closed_emitted = False
    _named = False  # the blocking connection has its client name

    def __init__(self, name: str, processor: Any, opts: dict[str, Any]) -> None:
        super().__init__(name, processor, opts)
        self._run_task: asyncio.Task[Any] | None = None
        #: The jobs being processed (by object id: bullmq's run loop may give several
        #: running jobs one token), each with the next-job reply of its
        #: ``moveToFinished`` once it completed (None until then).
        self._fetched: dict[int, Any] = {}
        self._move_to_completed = self.backend.moveToCompleted
        self.backend.moveToCompleted = self._complete_and_fetch
        self._move_to_failed = self.backend.moveToFailed
        self.backend.moveToFailed = self._fail_and_fetch
        # Node's client name (Queue.getWorkers), and the worker's name on every job it takes.
        self.clientName = node_client_name(self.prefix, name, self.workerName)
        self.commands = WorkerCommands(self)
        self.commands.install()
        self.backend.moveToActive = self.commands.move_to_active
        self.processor = self._catch_rate_limited(self.processor)  # type: ignore[has-type]
        # A job's updateProgress goes through the worker's backend: emit `progress`
        # there, which costs nothing for the jobs that never report any.
        self._update_progress = self.backend.updateProgress
        self.backend.updateProgress = self._update_progress_and_emit
        # bullmq's run loop closes the lock manager when it ends, which a graceful
        # close makes happen while taken jobs still run: keep renewing their locks
        # until they are done (a forced close still closes it at once).
        self._close_locks = self.lockManager.close
        self.lockManager.close = self._close_locks_when_done
        self._jobs_done = False
        for client in (self.client, self.bclient):
            use_retry_policy(client)

    @property
    def busy(self) -> bool:
        """Whether a job is running."""
        return bool(self.jobs)

    @property
    def running_jobs(self) -> int:
        """How many jobs are running."""
        return len(self.jobs)

    async def _ensure_client_names(self) -> None:
        """Name the blocking connection as Node's worker names its own, and only that one.

        Node's ``Queue.getWorkers()`` lists every client of that name: one per
        worker, as for a Node worker (bullmq named both connections, counting twice).
        """
        if not self._named:
            await self.blockingRedisConnection.set_client_name(self.clientName)
            self._named = True

    async def load_server_version(self) -> None:
        """Ask the server its version, which bullmq needs before ``run()``.

        Without it bullmq rounds blocking timeouts up to whole seconds, so
        delayed and cron jobs would start up to a second late.
        """
        await self.blockingRedisConnection.getRedisVersion()

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> None:
        if event_name == "closed":  # bullmq emits it at the end of every close() call
            if self._closed_emitted:
                return
            self._closed_emitted = True
        super().emit(event_name, *args, **kwargs)

    def _notify(self, event_name: str, *args: Any) -> None:
        """Emit an event; a listener's exception becomes an ``error`` event."""
        try:
            self.emit(event_name, *args)
        except Exception as exc:
            self.emit("error", exc)

    def _takes_next(self, job: Any) -> bool:
        """Whether finishing ``job`` takes the next one: it runs here and the worker goes on."""
        if id(job) not in self._fetched or self.closing or self.paused or self.forceClosing:
            return False
        return not self.rate_limited

    async def _complete_and_fetch(
        self, job: Any, value: Any, remove: Any, token: str, fetch_next: bool = False
    ) -> Any:
        """``backend.moveToCompleted`` that also takes the next job while the worker runs."""
        ours = self._takes_next(job)
        done = await self._move_to_completed(
            job, value, remove, token, fetch_next=fetch_next or ours
        )
        if ours and isinstance(done, dict):
            self._fetched[id(job)] = done.get("result")
        return done

    async def _fail_and_fetch(
        self,
        job: Any,
        reason: str,
        remove: Any,
        token: str,
        fetch_next: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> Any:
        """``backend.moveToFailed`` (a failure for good) that also takes the next job."""
        ours = self._takes_next(job)
        done = await self._move_to_failed(job, reason, remove, token, fetch_next or ours, fields)
        if ours and isinstance(done, dict):
            self._fetched[id(job)] = done.get("result")
        return done

    async def _update_progress_and_emit(self, job_id: Any, progress: Any) -> Any:
        """``backend.updateProgress`` that emits ``progress`` once Redis has the value."""
        done = await self._update_progress(job_id, progress)
        job = next((running for running, _ in self.jobs if running.id == job_id), None)
        if job is not None:  # one of the jobs running here
            self._notify("progress", job, progress)
        return done

    async def processJob(self, job: Any, token: str) -> Any:
        """Run ``job``; return the next job if finishing it took one (see the module doc).

        A handler's ``RateLimited`` never reaches bullmq's failure path: the
        processor is wrapped to move the job back to waiting (:mod:`.rate_limit`).
        """
        self._fetched[id(job)] = None
        use_handler_stack(job)
        try:
            await super().processJob(job, token)
        finally:
            fetched = self._fetched.pop(id(job), None)
        if not fetched:
            return None
        job_data, job_id, limit_until, delay_until = fetched
        next_job = await self.nextJobFromJobData(
            job_data, job_id, limit_until or 0, delay_until or 0, token
        )
        if next_job is not None:  # bullmq emits it for the jobs its own fetch takes
            self._notify("active", next_job, "waiting")
        return next_job

    async def run(self) -> None:
        self._run_task = asyncio.current_task()
        await super().run()

    async def close(self, force: bool = False) -> None:
        if not self.closing:
            self._notify("closing", "closing queue")
        self._interrupt_rate_limit_wait()
        try:
            if not force and not self.closing:
                await self._finish_taken_jobs()
            self._jobs_done = True
            await super().close(force)
        finally:
            await self.commands.close()
            await close_sentinel_pool(self.client)

    async def _close_locks_when_done(self) -> None:
        if self.closing and not self.forceClosing and not self._jobs_done:
            return  # the run loop ended first; `close` closes the locks after the jobs
        await self._close_locks()

    async def _finish_taken_jobs(self) -> None:
        """Stop fetching, then wait until every job fetched so far has run to its end."""
        self.closing = True
        self.paused = False
        self.resume_event.set()
        if self.waiting:
            self.waiting.cancel()
        self._interrupt_rate_limit_wait()
        if self._run_task is not None:
            await asyncio.wait([self._run_task])
        # The main loop has ended. What it left in ``processing`` it has not
        # looked at: running jobs, and fetches that returned or may yet return a job.
        tasks: set[asyncio.Future[Any]] = set(self.processing)  # type: ignore[has-type]
        while tasks:
            done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                job = None if task.cancelled() or task.exception() else task.result()
                if isinstance(job, Job) and not self.forceClosing:
                    tasks.add(asyncio.ensure_future(self.processJob(job, job.token)))
            self.processing = tasks  # so that a forced close cancels these too

    async def nextJobFromJobData(
        self,
        job_data: dict[str, Any] | None = None,
        job_id: str | None = None,
        limit_until: int = 0,
        delay_until: int = 0,
        token: str | None = None,
    ) -> Any:
        drained = self.drained
        try:
            job = await super().nextJobFromJobData(
                job_data, job_id, limit_until, delay_until, token
            )
            if job is not None:
                # A bad backoff makes the script that retries a failed run raise
                # half-way, and the job drops out of every list: fail it now.
                check_retry_options(job.opts)
            elif not job_data and self.drained and not drained:
                self._notify("drained")
            return job
        except (ValueError, TypeError, AttributeError, PayloadError) as exc:
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
