"""The job context: what a handler knows of the job it runs, and what it can do to it.

A handler that takes a second parameter gets it (``handle(self, data, job)``);
:func:`current_job` returns the same object anywhere in the handler's call
tree, also in a sync handler's thread. It mirrors what a Node BullMQ processor
reads and calls on its ``Job``, with snake_case names. Fields are read from
BullMQ's job when asked, so a job whose handler never looks pays only for
creating this object.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, TypeVar, overload

from bullworker.core import keys
from bullworker.core.errors import JobCancelled
from bullworker.core.jobs import BaseJob, JobDefinition, check_json, default_registry
from bullworker.core.trace import TRACEPARENT, job_trace_context
from bullworker.transport import bullmq_compat

T = TypeVar("T")

__all__ = ["JobContext", "JobParent", "current_job"]


@dataclass(frozen=True, slots=True)
class JobParent:
    """The parent of a job in a flow: its queue and id."""

    queue: str
    id: str

    def __str__(self) -> str:
        return f"{self.queue}:{self.id}"


def _when(ms: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC) if ms else None
    except (TypeError, ValueError, OverflowError):
        return None


class JobContext:
    """One run of one job, as its handler sees it. Read-only; methods act on the job in Redis.

    ``await job.progress(50)`` and ``await job.log("line")`` are Node's
    ``job.updateProgress`` and ``job.log``: Node's ``QueueEvents`` sees the
    progress, ``getJobLogs`` the lines (bounded by the job's ``keepLogs``
    option). A sync handler, which runs in a thread, calls the ``*_sync``
    twins instead.
    """

    __slots__ = (
        "_cancel_reason", "_definition", "_host", "_job", "_loop", "_prefix", "_queue", "_task",
    )  # fmt: skip

    def __init__(
        self,
        job: Any,
        queue: str,
        *,
        prefix: str = "bull",
        definition: JobDefinition | None = None,
        host: Any = None,
    ) -> None:
        self._job = job
        #: Who runs the job (a Runner, ``run_job``): its ``registry`` names the job classes
        #: of ``children_values``; its ``recorded_children``, if any, reads ``_jobs``.
        self._host = host
        self._queue = queue
        self._prefix = prefix
        self._definition = definition
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cancel_reason: str | None = None
        self._task: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        return f"<JobContext {self._queue}:{self.id} {self.name} attempt {self.attempt}/{self.attempts}>"

    # --- what the job is ---------------------------------------------------------

    @property
    def id(self) -> str:
        """The job's id in its queue."""
        return str(self._job.id)

    @property
    def queue(self) -> str:
        return self._queue

    @property
    def name(self) -> str:
        """The job's name: the job class's name for bullworker's jobs."""
        return str(self._job.name)

    @property
    def attempt(self) -> int:
        """This run's number: 1 on the first run, 2 on the first retry..."""
        return int(self._job.attemptsMade or 0) + 1

    @property
    def attempts(self) -> int:
        """How many runs the job may have (its ``attempts`` option, at least 1)."""
        return max(1, int(self.opts.get("attempts") or 1))

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure of this run fails the job for good."""
        return self.attempt >= self.attempts

    @property
    def queued_at(self) -> datetime:
        return _when(self._job.timestamp) or self.started_at

    @property
    def started_at(self) -> datetime:
        """When this run started."""
        return _when(getattr(self._job, "processedOn", 0)) or datetime.now(UTC)

    @property
    def delay(self) -> float:
        """Seconds the job was delayed by when queued (its ``delay`` option)."""
        return float(self.opts.get("delay") or 0) / 1000

    @property
    def priority(self) -> int:
        """Its ``priority`` option: 0 for none, 1 the highest."""
        return int(self.opts.get("priority") or 0)

    @property
    def parent(self) -> JobParent | None:
        """The parent job when this job is a child in a flow."""
        parent = getattr(self._job, "parent", None)
        if not isinstance(parent, dict) or parent.get("id") is None:
            return None
        queue_key = str(parent.get("queueKey") or "")
        queue = queue_key.removeprefix(f"{self._prefix}:") if queue_key else self._queue
        return JobParent(queue=queue, id=str(parent["id"]))

    @property
    def trace_id(self) -> str | None:
        """The trace id of the job's run when tracing is on, else of its ``traceparent``."""
        otel = sys.modules.get("opentelemetry.trace")  # only if something imported it
        if otel is not None:
            span = otel.get_current_span().get_span_context()
            if span.is_valid:
                return f"{span.trace_id:032x}"
        traceparent = job_trace_context(self.opts).get("traceparent")
        found = TRACEPARENT.match(traceparent) if traceparent else None
        return found.group(1) if found else None

    @property
    def opts(self) -> Mapping[str, Any]:
        """The job's BullMQ options as stored (camelCase keys), read-only."""
        return MappingProxyType(self._job.opts or {})

    @property
    def data(self) -> Any:
        """The payload as stored in Redis (JSON); the handler's ``data`` is its validated form."""
        return self._job.data

    # --- cancellation -------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """Whether someone asked to cancel this job (``bullworker jobs cancel``)."""
        return self._cancel_reason is not None

    @property
    def cancel_reason(self) -> str | None:
        return self._cancel_reason

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled: a sync handler's check point."""
        if self._cancel_reason is not None:
            raise JobCancelled(self._cancel_reason)

    def request_cancel(self, reason: str) -> None:
        """Mark the job cancelled; an async handler is interrupted at its next await.

        A sync handler's thread cannot be interrupted: it sees :attr:`cancelled`
        and the ``*_sync`` methods raise :class:`JobCancelled`.
        """
        if self._cancel_reason is not None:
            return
        self._cancel_reason = reason or "cancelled"
        task = self._task
        if task is not None and not task.done():
            message = f"JobCancelled: {self._cancel_reason}"
            try:
                here = asyncio.get_running_loop() is task.get_loop()
            except RuntimeError:
                here = False
            if here:  # at once: a deferred cancel could land after the handler returned
                task.cancel(message)
            else:
                task.get_loop().call_soon_threadsafe(task.cancel, message)

    # --- a parent in a flow ---------------------------------------------------------

    @overload
    async def children_values(self) -> dict[str, Any]: ...

    @overload
    async def children_values(self, job: type[BaseJob[Any, T]]) -> dict[str, T]: ...

    @overload
    async def children_values(self, job: str) -> dict[str, Any]: ...

    async def children_values(self, job: type[BaseJob[Any, Any]] | str | None = None) -> Any:
        """The results of this job's completed children, by ``<queue>:<id>`` (Node's
        ``job.getChildrenValues``).

        With a job class, only its children of that class, each read as its ``Out``
        (``ResultError`` if one does not read back); with a job name, those of that name.
        """
        raw = await self._job.getChildrenValues() or {}
        if job is None:
            return {keys.job_ref(self._prefix, key): value for key, value in raw.items()}
        registry = getattr(self._host, "registry", None) or default_registry
        if isinstance(job, str):
            name, definition = job, registry.find(job)
        else:
            definition = registry.definition_of(job)
            name = definition.name
        names = await self._children_names(list(raw))
        return {
            keys.job_ref(self._prefix, key): (
                value if definition is None else definition.result_from_wire(value)
            )
            for key, value in raw.items()
            if names.get(key) == name
        }

    async def children_failures(self) -> dict[str, str]:
        """The failed reasons of the children this job runs without, by ``<queue>:<id>``:
        those failed with ``ignore_dependency_on_failure`` or ``continue_parent_on_failure``
        (Node's ``job.getIgnoredChildrenFailures``)."""
        read = getattr(self._job, "getIgnoredChildrenFailures", None)
        if read is not None:
            raw = await read()
        else:
            key = keys.job_key(self._prefix, self._queue, self.id) + keys.IGNORED_SUFFIX
            raw = await bullmq_compat.job_client(self._job).hgetall(key)
        return {keys.job_ref(self._prefix, str(k)): str(v) for k, v in (raw or {}).items()}

    async def _children_names(self, child_keys: list[str]) -> dict[str, str]:
        """Job names of children by key: from their hashes (one round trip), and from
        ``_jobs`` for those the recorder has moved there."""
        if not child_keys:
            return {}
        read = getattr(self._job, "getChildrenNames", None)  # run_job's InlineJob
        if read is not None:
            return dict(await read(child_keys))
        async with bullmq_compat.job_client(self._job).pipeline(transaction=False) as pipe:
            for key in child_keys:
                pipe.hget(key, "name")
            found = await pipe.execute()
        names = {key: str(name) for key, name in zip(child_keys, found, strict=True) if name}
        recorded = getattr(self._host, "recorded_children", None)
        if recorded is not None and len(names) < len(child_keys):
            by_id = await recorded(f"{self._queue}:{self.id}")
            for key in child_keys:
                name = by_id.get(keys.job_ref(self._prefix, key))
                if key not in names and name:
                    names[key] = name
        return names

    # --- what a handler can do ----------------------------------------------------

    async def progress(self, value: Any) -> None:
        """Report progress: a number, or any JSON value (Node's ``job.updateProgress``)."""
        check_json(value, what="progress")
        await self._job.updateProgress(value)

    async def log(self, line: str) -> int:
        """Add a line to the job's log (Node's ``job.log``); returns how many lines it has."""
        return int(await self._job.log(str(line)) or 0)

    async def update_data(self, data: Any) -> None:
        """Replace the job's payload, e.g. to save how far a multi-step job got.

        Validated as the job class's input type; a retry or a snoozed run gets it.
        """
        wire = self._definition.to_wire(data) if self._definition else data
        check_json(wire, what="data")
        await self._job.updateData(wire)

    def progress_sync(self, value: Any) -> None:
        """:meth:`progress` for a sync handler (from its thread)."""
        self._from_thread(self.progress(value))

    def log_sync(self, line: str) -> int:
        """:meth:`log` for a sync handler (from its thread)."""
        return self._from_thread(self.log(line))

    def update_data_sync(self, data: Any) -> None:
        """:meth:`update_data` for a sync handler (from its thread)."""
        self._from_thread(self.update_data(data))

    @overload
    def children_values_sync(self) -> dict[str, Any]: ...

    @overload
    def children_values_sync(self, job: type[BaseJob[Any, T]]) -> dict[str, T]: ...

    @overload
    def children_values_sync(self, job: str) -> dict[str, Any]: ...

    def children_values_sync(self, job: type[BaseJob[Any, Any]] | str | None = None) -> Any:
        """:meth:`children_values` for a sync handler (from its thread)."""
        return self._from_thread(self.children_values(job))  # type: ignore[arg-type]

    def children_failures_sync(self) -> dict[str, str]:
        """:meth:`children_failures` for a sync handler (from its thread)."""
        return self._from_thread(self.children_failures())

    def _from_thread(self, call: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            call.close()
            raise RuntimeError(
                "the *_sync methods of the job context are for sync handlers; "
                "an async handler awaits progress(), log() and update_data()"
            )
        self.raise_if_cancelled()
        return asyncio.run_coroutine_threadsafe(call, loop).result()

    def _bind(self, task: asyncio.Task[Any] | None) -> None:
        """Tie the context to the task that runs the job (for cancel and the sync twins)."""
        self._task = task
        self._loop = task.get_loop() if task is not None else None


#: The job the current task (or its handler's thread) runs.
_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "bullworker_current_job", default=None
)


def current_job() -> JobContext:
    """The job being run, anywhere inside its handler's call tree.

    Raises ``LookupError`` outside a job (use :func:`find_current_job` to get None).
    """
    found = _current.get()
    if found is None:
        raise LookupError("current_job() was called outside a running job")
    return found


def find_current_job() -> JobContext | None:
    """The job being run, or None outside a job."""
    return _current.get()
