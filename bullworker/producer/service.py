"""The producer side: ``WorkerService.queue_job`` and friends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from bullworker.config.settings import AppConfig
from bullworker.core.errors import PayloadError, QueueUnavailable
from bullworker.core.jobs import BaseJob, JobDefinition, JobRegistry, check_json
from bullworker.core.options import check_options as check_options
from bullworker.core.trace import inject_trace_context
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import no_answer

log = logging.getLogger("bullworker.queueing")

T = TypeVar("T")
#: Measures payloads for MAX_PAYLOAD_BYTES; one encoder, not one per json.dumps call.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job that ``queue_job`` kept instead of queueing (``APP_ENV=test``)."""

    id: str
    name: str
    queue: str
    data: Any
    opts: dict[str, Any]


class WorkerService:
    """Queues jobs. Injectable; one instance per app, sharing its Queue objects."""

    def __init__(self, config: AppConfig, registry: JobRegistry) -> None:
        self.config = config
        self.registry = registry
        self.queued: list[QueuedJob] = []
        #: Put the current span's ``traceparent`` into job options (``create_app(tracing=)``).
        self.propagate_trace = True
        self._queues: dict[str, Any] = {}
        self._checked_defaults: dict[type, dict[str, Any]] = {}
        self._redis = config.redis_settings("bull")
        #: Calls to Redis in flight, by task, with their deadline (see ``_call``).
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_loop: asyncio.AbstractEventLoop | None = None

    def queue_for(self, job: type[BaseJob[Any, Any]] | str) -> str:
        """The queue a job class (or registered name) goes to."""
        definition = self._definition(job)
        return definition.queue(self.config.bull_queue)

    def _definition(self, job: type[BaseJob[Any, Any]] | str) -> JobDefinition:
        if isinstance(job, str):
            return self.registry.get(job)
        return self.registry.definition_of(job)

    def _queue(self, name: str) -> Any:
        queue = self._queues.get(name)
        if queue is None:
            queue = open_queue(self.config, name)
            self._queues[name] = queue
        return queue

    async def _call(self, what: str, awaitable: Awaitable[T]) -> T:
        """Await a producer call to Redis, failing it after ``REDIS_TIMEOUT``.

        One sweep every quarter of the timeout (at most a second) cancels the
        calls past their deadline, instead of a timer per call: ``wait_for``
        or ``asyncio.timeout`` cost 15-30 us a call, a sixth of a ``queue_job``.
        """
        timeout = self.config.redis_timeout
        task = asyncio.current_task()
        cancelling = 0
        if task is None:  # not run by a task, so nothing to cancel: a plain timeout
            awaitable = asyncio.wait_for(awaitable, timeout)
        else:
            loop = task.get_loop()
            self._deadlines[task] = loop.time() + timeout
            if self._sweeper is None or self._sweep_loop is not loop:
                self._sweep_loop = loop
                self._sweeper = loop.call_later(min(1.0, timeout / 4), self._sweep, loop)
            cancelling = task.cancelling()
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task is None or task not in self._expired or task.uncancel() > cancelling:
                raise  # not ours, or also cancelled by someone else
            raise no_answer(self.config, what, "TimeoutError") from None
        except (TimeoutError, OSError) as exc:
            raise no_answer(self.config, what, type(exc).__name__) from None
        except RedisError as exc:  # refused credentials, no Sentinel master, not a Redis...
            raise QueueUnavailable(
                f"could not {what}: Redis at {self._redis.describe()}: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            if task is not None:
                self._deadlines.pop(task, None)
                self._expired.discard(task)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel the calls past their deadline; re-armed while calls are in flight."""
        now = loop.time()
        for task, deadline in list(self._deadlines.items()):
            if task.done() or task.get_loop().is_closed():
                self._deadlines.pop(task, None)  # left behind by a closed loop
            elif task.get_loop() is loop and deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._sweeper = None
        if self._deadlines:
            period = min(1.0, self.config.redis_timeout / 4)
            self._sweeper = loop.call_later(period, self._sweep, loop)

    def _prepare(self, definition: JobDefinition, opts: dict[str, Any]) -> dict[str, Any]:
        given = {k: v for k, v in opts.items() if v is not None}
        defaults = definition.cls.JOB_OPTIONS
        if given:
            return check_options({**defaults, **given})
        if not defaults:
            return {}
        checked = self._checked_defaults.get(definition.cls)
        if checked is None:  # JOB_OPTIONS are checked once per class, not per job
            checked = self._checked_defaults[definition.cls] = check_options(dict(defaults))
        return dict(checked)

    async def queue_job(
        self,
        job: type[BaseJob[Any, Any]],
        data: Any = None,
        *,
        delay: int | None = None,
        **opts: Any,
    ) -> str:
        """Queue one job and return its id.

        ``opts`` are BullMQ job options in their own camelCase form
        (``priority``, ``attempts``, ``backoff``, ``jobId``, ``deduplication``...).
        """
        return await self._add(self._definition(job), data, {"delay": delay, **opts})

    async def queue_job_by_name(
        self,
        name: str,
        data: Any = None,
        *,
        queue: str | None = None,
        force: bool = False,
        **opts: Any,
    ) -> str:
        """Queue a job by its registered name; ``force`` allows unregistered names."""
        if queue is not None and (not queue or ":" in queue):
            raise PayloadError(f"queue {queue!r} must be a non-empty name without ':'")
        definition = self.registry.find(name)
        if definition is None and not force:
            definition = self.registry.get(name)  # raises UnknownJobError
        if definition is None:
            check_json(data if data is not None else {}, what=f"{name} payload")
            return await self._add_raw(name, queue or self.config.bull_queue, data, opts)
        return await self._add(definition, data, opts, queue=queue)

    async def queue_jobs(
        self, job: type[BaseJob[Any, Any]], items: Sequence[Any], **opts: Any
    ) -> list[str]:
        """Queue many jobs of one class in one round trip; returns their ids in order."""
        definition = self._definition(job)
        options = self._prepare(definition, opts)
        payloads = [definition.to_wire(item) for item in items]
        for payload in payloads:
            self._check_size(definition.name, payload)
        queue_name = definition.queue(self.config.bull_queue)
        if self.propagate_trace:
            options = inject_trace_context(options)
        if self.config.is_test:
            return [self._keep(definition.name, queue_name, p, options) for p in payloads]
        if not payloads:
            return []
        entries = [{"name": definition.name, "data": p, "opts": dict(options)} for p in payloads]
        jobs = await self._call("queue jobs", self._queue(queue_name).addBulk(entries))
        return [str(j.id) for j in jobs]

    async def _add(
        self,
        definition: JobDefinition,
        data: Any,
        opts: dict[str, Any],
        *,
        queue: str | None = None,
    ) -> str:
        options = self._prepare(definition, opts)
        payload = definition.to_wire(data)
        queue_name = queue or definition.queue(self.config.bull_queue)
        return await self._add_raw(definition.name, queue_name, payload, options)

    async def _add_raw(self, name: str, queue: str, payload: Any, options: dict[str, Any]) -> str:
        payload = {} if payload is None else payload
        self._check_size(name, payload)
        if self.propagate_trace:
            options = inject_trace_context(options)
        if self.config.is_test:
            return self._keep(name, queue, payload, options)
        job = await self._call(f"queue {name}", self._queue(queue).add(name, payload, options))
        log.debug("queued %s id=%s queue=%s", name, job.id, queue)
        return str(job.id)

    async def job_state(self, queue: str, job_id: str) -> str | None:
        """The state of a job in Redis (``waiting``, ``active``, ``completed``...), None if absent."""
        if self.config.is_test:
            return None
        state = await self._call(f"look up job {job_id}", self._queue(queue).getJobState(job_id))
        return None if state == "unknown" else str(state)

    def _check_size(self, name: str, payload: Any) -> None:
        limit = self.config.max_payload_bytes
        if limit:
            size = len(_COMPACT_JSON.encode(payload))
            if size > limit:
                raise PayloadError(
                    f"{name} payload is {size} bytes of JSON, over MAX_PAYLOAD_BYTES={limit}"
                )

    def _keep(self, name: str, queue: str, payload: Any, options: dict[str, Any]) -> str:
        job_id = f"test-{len(self.queued) + 1}"
        self.queued.append(QueuedJob(job_id, name, queue, payload, options))
        log.warning("APP_ENV=test: not queueing %s on %s (kept as %s)", name, queue, job_id)
        return job_id

    async def close(self) -> None:
        """Close the Queue connections."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            try:
                await close_queue(queue, self.config.redis_timeout)
            except Exception as exc:  # closing must never raise
                log.debug("closing queue %s: %s", queue.name, exc)
