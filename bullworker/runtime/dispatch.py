"""Running one job: find its class, validate, build, hooks, handle, encode, wrap failures.

The runner's bullmq processor and ``bullworker.testing.run_job`` share this code,
so a job run inline in a unit test takes the path it takes on the runner.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, Protocol

from bullworker.core.errors import (
    JobCancelled,
    JobFailed,
    JobTimeout,
    PayloadError,
    RateLimited,
    Snooze,
    UnknownJobError,
    UnrecoverableError,
)
from bullworker.core.hooks import JobHook, JobRun, call_hooks
from bullworker.core.jobs import BaseJob, JobDefinition, JobRegistry
from bullworker.core.tasks import within
from bullworker.runtime.backoff import Backoffs
from bullworker.runtime.context import JobContext, _current
from bullworker.runtime.failures import handler_stack, reason_of
from bullworker.runtime.watchdog import job_task_name

# The runner's logger: these lines are the runner's, whoever dispatches.
log = logging.getLogger("bullworker.runner")

#: Builds a job instance with its dependencies injected.
JobFactory = Callable[[type[BaseJob[Any, Any]]], BaseJob[Any, Any]]
#: Told that a sync handler overran its TIMEOUT in this pool (its thread runs on).
RetirePool = Callable[[ThreadPoolExecutor, str], None]


class JobHost(Protocol):
    """What dispatch reads, at each job, from whoever runs jobs (a Runner)."""

    registry: JobRegistry
    hooks: list[JobHook]
    factory: JobFactory
    backoffs: Backoffs

    async def run_handler(
        self, definition: JobDefinition, instance: Any, data: Any, job: JobContext
    ) -> Any: ...


class Dispatcher:
    """Runs the jobs of one queue; the processor handed to one bullmq Worker.

    Returns the result as JSON. An unknown name or an invalid payload raises
    ``bullmq.UnrecoverableError`` (``"PayloadError: ..."``); a handler that
    raises fails with :class:`JobFailed` (``"<ExceptionClass>: <message>"``,
    the handler's exception as ``__cause__``, its own frames as
    ``handler_stack``), or with ``bullmq.UnrecoverableError`` when it must not
    be retried (an ``UnrecoverableError`` of either kind, a cancel, an unknown
    backoff type). ``Snooze`` moves the job to delayed and raises bullmq's
    ``DelayedError``; ``RateLimited`` goes up to the worker as it is.
    """

    def __init__(self, host: JobHost, queue: str, prefix: str = "bull") -> None:
        self.host = host
        self.queue = queue
        self.prefix = prefix
        #: The jobs running now, by id: what a cancel request reaches.
        self.running: dict[str, JobContext] = {}

    async def __call__(self, job: Any, token: str | None = None) -> Any:
        context = JobContext(job, self.queue, prefix=self.prefix, host=self.host)
        entered = _current.set(context)
        job_id = str(job.id)
        self.running[job_id] = context
        try:
            return await self._dispatch(job, token, context)
        finally:
            if self.running.get(job_id) is context:
                del self.running[job_id]
            _current.reset(entered)

    def cancel(self, job_id: str, reason: str) -> bool:
        """Ask the job ``job_id`` running here to stop; False when it does not run here."""
        context = self.running.get(job_id)
        if context is None:
            return False
        context.request_cancel(reason)
        return True

    async def _dispatch(self, job: Any, token: str | None, context: JobContext) -> Any:
        from bullmq import UnrecoverableError as BullmqUnrecoverable

        host = self.host
        task = asyncio.current_task()
        context._bind(task)
        if task is not None:  # the loop watchdog names a blocking job by its task
            task.set_name(job_task_name(job.name, job.id, self.queue))
        definition = host.registry.find(job.name)
        if definition is None:
            err = UnknownJobError(job.name, host.registry.names())
            log.error("%s on queue %s (job id %s)", err, self.queue, job.id)
            raise BullmqUnrecoverable(f"UnknownJobError: {err}")
        context._definition = definition
        try:
            data = definition.validate_input(job.data)
        except PayloadError as exc:
            log.error("job %s id=%s: %s", job.name, job.id, exc)
            raise BullmqUnrecoverable(f"PayloadError: {exc}") from None
        started = time.perf_counter()
        hooks = host.hooks
        run = job_run(job, self.queue, data) if hooks else None
        if run is not None:
            call_hooks(hooks, "job_started", run)
        try:
            context.raise_if_cancelled()  # cancelled before it started
            instance = host.factory(definition.cls)
            result = await host.run_handler(definition, instance, data, context)
            wire = definition.result_to_wire(result)
        except (Snooze, RateLimited) as exc:
            if run is not None:
                call_hooks(
                    hooks, "job_finished", run, "delayed", None, time.perf_counter() - started,
                    will_retry=True,
                )  # fmt: skip
            if isinstance(exc, RateLimited):
                raise
            await self._snooze(job, token, exc)
        except asyncio.CancelledError as exc:
            if context.cancel_reason is None or task is None:  # a forced shutdown
                raise
            task.uncancel()
            cancelled = JobCancelled(context.cancel_reason)
            raise self._failure(job, context, run, started, cancelled) from exc
        except Exception as exc:
            raise self._failure(job, context, run, started, exc) from exc
        if run is not None:
            call_hooks(
                hooks, "job_finished", run, "completed", None, time.perf_counter() - started,
                will_retry=False,
            )  # fmt: skip
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s id=%s queue=%s completed in %.1f ms",
                job.name, job.id, self.queue, (time.perf_counter() - started) * 1000,
            )  # fmt: skip
        return wire

    async def _snooze(self, job: Any, token: str | None, snooze: Snooze) -> NoReturn:
        """Node's ``moveToDelayed`` + ``DelayedError``: no attempt spent, the worker leaves it."""
        from bullmq import DelayedError

        until = int(time.time() * 1000 + snooze.delay * 1000)
        await job.moveToDelayed(until, token)
        log.info(
            "job %s id=%s queue=%s snoozed for %g s", job.name, job.id, self.queue, snooze.delay
        )
        raise DelayedError(str(snooze)) from snooze

    def _failure(
        self, job: Any, context: JobContext, run: JobRun | None, started: float, exc: Exception
    ) -> Exception:
        """What the worker fails the job with, once it is logged and the hooks told."""
        from bullmq import UnrecoverableError as BullmqUnrecoverable

        reason = reason_of(exc)
        final = isinstance(exc, BullmqUnrecoverable | UnrecoverableError | JobCancelled)
        retry = not final and context.attempt < context.attempts
        if retry:
            unknown = self.host.backoffs.unknown(context.opts.get("backoff"))
            if unknown is not None:  # bullmq would leave the job active: fail it, saying why
                reason = f"{unknown} (the run failed with {reason})"
                final, retry = True, False
        log.warning(
            "job %s id=%s queue=%s failed (attempt %d of %d%s): %s",
            job.name, job.id, self.queue, context.attempt, context.attempts,
            ", will retry" if retry else "", reason,
        )  # fmt: skip
        if run is not None:
            call_hooks(
                self.host.hooks, "job_finished", run, "failed", exc,
                time.perf_counter() - started, will_retry=retry,
            )  # fmt: skip
        failure: Exception = BullmqUnrecoverable(reason) if final else JobFailed(reason)
        failure.handler_stack = handler_stack(exc)  # type: ignore[attr-defined]
        return failure


def job_run(job: Any, queue: str, data: Any) -> JobRun:
    """The :class:`JobRun` hooks see for this run of ``job``."""
    opts = job.opts or {}
    return JobRun(
        queue=queue,
        name=job.name,
        id=str(job.id),
        attempt=job.attemptsMade + 1,
        attempts=max(1, int(opts.get("attempts") or 1)),
        queued_at_ms=int(job.timestamp or 0),
        started_at_ms=int(job.processedOn or time.time() * 1000),
        opts=opts,
        data=data,
    )


async def call_handler(
    definition: JobDefinition,
    instance: Any,
    data: Any,
    job: JobContext,
    executor: ThreadPoolExecutor | None = None,
    retire: RetirePool | None = None,
) -> Any:
    """Run ``handle`` (async, or sync in a thread of ``executor``) within the class's TIMEOUT."""
    args = (data, job) if definition.takes_context else (data,)
    if definition.is_async:
        call: Awaitable[Any] = instance.handle(*args)
    else:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = loop.run_in_executor(executor, ctx.run, instance.handle, *args)
    timeout = definition.cls.TIMEOUT
    if timeout is None:
        return await call
    try:
        return await within(call, timeout)
    except TimeoutError:
        if not definition.is_async and executor is not None and retire is not None:
            retire(executor, definition.name)
        raise JobTimeout(
            f"{definition.name} ran longer than its TIMEOUT of {timeout:g} s"
        ) from None
