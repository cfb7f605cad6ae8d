"""``WorkerService``: ``queue_job`` and friends, and waiting for results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from redis.exceptions import RedisError

from bullworker.config.settings import AppConfig
from bullworker.core.errors import PayloadError, QueueUnavailable, ResultUnavailable
from bullworker.core.jobs import BaseJob, JobDefinition, JobRegistry, check_json
from bullworker.core.options import check_options as check_options
from bullworker.core.trace import inject_trace_context
from bullworker.producer.results import Finished, HistoryLookup, JobHandle, QueueResults, result_of
from bullworker.transport.bullmq_compat.node_versions import PausedLayout
from bullworker.transport.connection import (
    close_flow_producer,
    close_queue,
    open_flow_producer,
    open_queue,
    redis_client,
)
from bullworker.transport.deadline import no_answer

if TYPE_CHECKING:
    from bullworker.producer.flows import FlowHandle, FlowJob

log = logging.getLogger("bullworker.queueing")

T = TypeVar("T")
Out = TypeVar("Out")
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
        #: Where a finished job's end is read once it left Redis (the app sets it: ``_jobs``).
        self.history: HistoryLookup | None = None
        self._results: dict[str, QueueResults] = {}
        self._results_client: Any = None
        #: The FlowProducer of ``queue_flow``, opened on first use.
        self._flows: Any = None
        #: Adds so that a Node BullMQ 5.x that keeps a queue paused keeps them on resume.
        self._layout = PausedLayout()

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
            awaitable = asyncio.wait_for(awaitable, timeout)  # `within` needs a task
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

    @overload
    async def queue_job(
        self,
        job: type[BaseJob[Any, Out]],
        data: Any = None,
        *,
        delay: int | None = None,
        wait: Literal[False] = False,
        timeout: float | None = None,
        **opts: Any,
    ) -> JobHandle[Out]: ...

    @overload
    async def queue_job(
        self,
        job: type[BaseJob[Any, Out]],
        data: Any = None,
        *,
        delay: int | None = None,
        wait: Literal[True],
        timeout: float | None = None,
        **opts: Any,
    ) -> Out: ...

    async def queue_job(
        self,
        job: type[BaseJob[Any, Any]],
        data: Any = None,
        *,
        delay: int | None = None,
        wait: bool = False,
        timeout: float | None = None,
        **opts: Any,
    ) -> Any:
        """Queue one job; return its id as a :class:`JobHandle` (a ``str``), or its result.

        ``opts`` are BullMQ job options in their own camelCase form
        (``priority``, ``attempts``, ``backoff``, ``jobId``, ``deduplication``...).
        With ``wait=True`` it waits up to ``timeout`` seconds (None: no limit)
        for the job's result, typed as the class's ``Out``; a failed job raises
        :class:`JobFailedError`, a late one ``TimeoutError``.
        """
        definition = self._definition(job)
        job_id = await self._add(definition, data, {"delay": delay, **opts})
        handle: JobHandle[Any] = self._handle(
            job_id, definition.queue(self.config.bull_queue), definition
        )
        return await handle.result(timeout) if wait else handle

    def _handle(self, job_id: str, queue: str, definition: JobDefinition | None) -> JobHandle[Any]:
        return JobHandle(job_id, queue=queue, waiter=self.wait_for, definition=definition)

    async def wait_for(self, queue: str, job_id: str, timeout: float | None = None) -> Finished:
        """Wait until the job ``queue:job_id`` ends and say how (``TimeoutError`` after ``timeout``).

        Whoever runs it; answered from ``_jobs`` once the recorder removed it from Redis.
        """
        if self.config.is_test:
            raise ResultUnavailable(
                f"APP_ENV=test: job {queue}:{job_id} was kept, not queued, so it never runs"
            )
        results = self._results.get(queue)
        if results is None:
            if self._results_client is None:
                self._results_client = redis_client(self._redis)
            results = self._results[queue] = QueueResults(
                self._results_client, self.config.bull_prefix, queue
            )
        try:
            return await results.wait(job_id, timeout, self.history)
        except TimeoutError:  # the wait's own (an OSError too): the job did not end in time
            raise
        except (OSError, RedisError) as exc:
            raise QueueUnavailable(
                f"could not wait for job {queue}:{job_id}: Redis at {self._redis.describe()}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    async def result_of(self, queue: str, job_id: str, timeout: float | None = None) -> Any:
        """The result of the job ``queue:job_id`` (typed if its name is registered here)."""
        finished = await self.wait_for(queue, job_id, timeout)
        return result_of(finished, queue, job_id, None)

    async def queue_job_by_name(
        self,
        name: str,
        data: Any = None,
        *,
        queue: str | None = None,
        force: bool = False,
        **opts: Any,
    ) -> JobHandle[Any]:
        """Queue a job by its registered name; ``force`` allows unregistered names."""
        if queue is not None and (not queue or ":" in queue):
            raise PayloadError(f"queue {queue!r} must be a non-empty name without ':'")
        definition = self.registry.find(name)
        if definition is None and not force:
            definition = self.registry.get(name)  # raises UnknownJobError
        if definition is None:
            check_json(data if data is not None else {}, what=f"{name} payload")
            target = queue or self.config.bull_queue
            return self._handle(await self._add_raw(name, target, data, opts), target, None)
        target = queue or definition.queue(self.config.bull_queue)
        job_id = await self._add(definition, data, opts, queue=target)
        return self._handle(job_id, target, definition)

    async def queue_jobs(
        self, job: type[BaseJob[Any, Out]], items: Sequence[Any], **opts: Any
    ) -> list[JobHandle[Out]]:
        """Queue many jobs of one class in one round trip; returns their ids in order."""
        definition = self._definition(job)
        options = self._prepare(definition, opts)
        payloads = [definition.to_wire(item) for item in items]
        for payload in payloads:
            self._check_size(definition.name, payload)
        queue_name = definition.queue(self.config.bull_queue)
        self._refuse_removal(definition.name, queue_name, options)
        if self.propagate_trace:
            options = inject_trace_context(options)
        if self.config.is_test:
            ids = [self._keep(definition.name, queue_name, p, options) for p in payloads]
        elif not payloads:
            return []
        else:
            entries = [
                {"name": definition.name, "data": p, "opts": dict(options)} for p in payloads
            ]
            queue = self._queue(queue_name)
            ids = await self._call("queue jobs", self._layout.add_bulk(queue, entries))
        return [self._handle(job_id, queue_name, definition) for job_id in ids]

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
        self._refuse_removal(name, queue, options)
        if self.propagate_trace:
            options = inject_trace_context(options)
        if self.config.is_test:
            return self._keep(name, queue, payload, options)
        added = self._layout.add(self._queue(queue), name, payload, options)
        job_id = await self._call(f"queue {name}", added)
        log.debug("queued %s id=%s queue=%s", name, job_id, queue)
        return job_id

    async def queue_flow(self, flow: FlowJob[Out]) -> FlowHandle[Out]:
        """Queue a flow: its root job runs once its children are done (see :class:`FlowJob`).

        Every job is checked as ``queue_job`` checks it, then the whole tree is
        added in one transaction. Returns the root's :class:`FlowHandle`, whose
        ``children`` are the handles of its children, in the order given.
        """
        from bullworker.producer.flows import queue_flow

        return await queue_flow(self, flow)

    def _flow_producer(self) -> Any:
        if self._flows is None:
            self._flows = open_flow_producer(self.config)
        return self._flows

    async def job_state(self, queue: str, job_id: str) -> str | None:
        """The state of a job in Redis (``waiting``, ``active``, ``completed``...), None if absent."""
        if self.config.is_test:
            return None
        state = await self._call(f"look up job {job_id}", self._queue(queue).getJobState(job_id))
        return None if state == "unknown" else str(state)

    def _refuse_removal(self, name: str, queue: str, options: dict[str, Any]) -> None:
        """PayloadError for ``removeOnComplete``/``removeOnFail`` on a queue the app records:
        BullMQ would remove the job when it finishes, before the recorder writes its row."""
        given = [
            o for o in ("removeOnComplete", "removeOnFail") if options.get(o) not in (None, False)
        ]
        if not given or not self.config.record_jobs:
            return
        config = self.config
        recorded = {*self.registry.queues(config.bull_queue), *(config.consumed_queues or [])}
        if queue not in recorded | set(config.record_only_queues):
            return
        raise PayloadError(
            f"{name}: {' and '.join(given)} would remove the job from Redis when it finishes, "
            f"before it is recorded in _jobs (queue {queue} is recorded: RECORD_JOBS is on). "
            "Leave it out: the recorder removes finished jobs itself once they are recorded, "
            "after the keep window (KEEP_COMPLETED, KEEP_FAILED, KEEP_AGE, QUEUE_KEEP)"
        )

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
        results, self._results = list(self._results.values()), {}
        for waiting in results:
            await waiting.stop()
        client, self._results_client = self._results_client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        flows, self._flows = self._flows, None
        if flows is not None:
            try:
                await close_flow_producer(flows, self.config.redis_timeout)
            except Exception as exc:  # closing must never raise
                log.debug("closing the flow producer: %s", exc)
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            try:
                await close_queue(queue, self.config.redis_timeout)
            except Exception as exc:  # closing must never raise
                log.debug("closing queue %s: %s", queue.name, exc)
