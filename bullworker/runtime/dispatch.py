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
from dataclasses import dataclass, field
from typing import Any, Protocol

from bullworker.core.errors import JobFailed, JobTimeout, PayloadError, UnknownJobError
from bullworker.core.hooks import JobHook, JobRun, call_hooks
from bullworker.core.jobs import BaseJob, JobDefinition, JobRegistry
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

    async def run_handler(self, definition: JobDefinition, instance: Any, data: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class InlineJob:
    """A job run without Redis: the fields dispatch reads of a ``bullmq.Job``."""

    name: str
    id: str
    data: Any
    opts: dict[str, Any] = field(default_factory=dict)
    # camelCase: the names of bullmq.Job's attributes.
    #: Runs before this one (``attempt - 1``).
    attemptsMade: int = 0
    #: When it was queued and when this run started (epoch ms).
    timestamp: int = 0
    processedOn: int = 0


#: ``queue``, ``job_name`` and ``job_id`` of the job this task (or its handler's thread)
#: runs; log handlers add them to the records logged meanwhile (see observe/logs.py).
current_job: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "bullworker_current_job", default=None
)


def _job_fields(job: Any, queue: str) -> dict[str, str]:
    return {"queue": queue, "job_name": str(job.name), "job_id": str(job.id)}


class Dispatcher:
    """Runs the jobs of one queue; the processor handed to one bullmq Worker.

    Returns the result as JSON. An unknown name or an invalid payload raises
    ``bullmq.UnrecoverableError`` (``"PayloadError: ..."``); a handler that
    raises fails with :class:`JobFailed` (``"<ExceptionClass>: <message>"``,
    the handler's exception as ``__cause__``).
    """

    def __init__(self, host: JobHost, queue: str) -> None:
        self.host = host
        self.queue = queue

    async def __call__(self, job: Any, token: str | None = None) -> Any:
        fields = current_job.set(_job_fields(job, self.queue))
        try:
            return await self._dispatch(job)
        finally:
            current_job.reset(fields)

    async def _dispatch(self, job: Any) -> Any:
        from bullmq import UnrecoverableError

        host = self.host
        task = asyncio.current_task()
        if task is not None:  # the loop watchdog names a blocking job by its task
            task.set_name(job_task_name(job.name, job.id, self.queue))
        definition = host.registry.find(job.name)
        if definition is None:
            err = UnknownJobError(job.name, host.registry.names())
            log.error(
                "%s on queue %s (job id %s)",
                err,
                self.queue,
                job.id,
                extra=_job_fields(job, self.queue),
            )
            raise UnrecoverableError(f"UnknownJobError: {err}")
        try:
            data = definition.validate_input(job.data)
        except PayloadError as exc:
            log.error("job %s id=%s: %s", job.name, job.id, exc, extra=_job_fields(job, self.queue))
            raise UnrecoverableError(f"PayloadError: {exc}") from None
        started = time.perf_counter()
        hooks = host.hooks
        run = job_run(job, self.queue, data) if hooks else None
        if run is not None:
            call_hooks(hooks, "job_started", run)
        try:
            instance = host.factory(definition.cls)
            result = await host.run_handler(definition, instance, data)
            wire = definition.result_to_wire(result)
        except BaseException as exc:
            handler_error = isinstance(exc, Exception) and not isinstance(exc, UnrecoverableError)
            if handler_error:  # logged before the hooks end the job's span
                log.warning(
                    "job %s id=%s queue=%s failed (attempt %d): %s: %s",
                    job.name, job.id, self.queue, job.attemptsMade + 1, type(exc).__name__, exc,
                    extra=_job_fields(job, self.queue),
                )  # fmt: skip
            if run is not None and isinstance(exc, Exception):  # not a forced shutdown
                retry = not isinstance(exc, UnrecoverableError) and run.attempt < run.attempts
                call_hooks(
                    hooks, "job_finished", run, "failed", exc, time.perf_counter() - started,
                    will_retry=retry,
                )  # fmt: skip
            if not handler_error:
                raise
            # failedReason is str(err): prefix the class so Node and _jobs see it.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise JobFailed(reason) from exc
        if run is not None:
            call_hooks(
                hooks, "job_finished", run, "completed", None, time.perf_counter() - started,
                will_retry=False,
            )  # fmt: skip
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "job %s id=%s queue=%s completed in %.1f ms",
                job.name, job.id, self.queue, (time.perf_counter() - started) * 1000,
                extra=_job_fields(job, self.queue),
            )  # fmt: skip
        return wire


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
    executor: ThreadPoolExecutor | None = None,
    retire: RetirePool | None = None,
) -> Any:
    """Run ``handle`` (async, or sync in a thread of ``executor``) within the class's TIMEOUT."""
    if definition.is_async:
        call: Awaitable[Any] = instance.handle(data)
    else:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        call = loop.run_in_executor(executor, ctx.run, instance.handle, data)
    timeout = definition.cls.TIMEOUT
    if timeout is None:
        return await call
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        if not definition.is_async and executor is not None and retire is not None:
            retire(executor, definition.name)
        raise JobTimeout(
            f"{definition.name} ran longer than its TIMEOUT of {timeout:g} s"
        ) from None
