"""Waiting for a queued job's result, whoever runs it (a Python runner or a Node worker).

The truth is the job in Redis: its hash and the ``completed``/``failed`` sets;
once the recorder removed it, its row in ``_jobs`` (through a lookup the app
provides: this layer does not read the history itself). The queue's event
stream only wakes a waiter early. One reader per queue follows the stream for
all the waiters of a process; a waiter registers, makes sure the reader holds
a position from before its own check, then checks the job, so a job that
finishes at any moment is never missed (no lost wake-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.core.errors import JobFailedError, ResultUnavailable
from bullworker.core.jobs import JobDefinition
from bullworker.core.tasks import within

log = logging.getLogger("bullworker.queueing")

Out = TypeVar("Out")

#: Longest single block on the event stream, in ms (a reconnect is noticed this soon).
BLOCK_MS = 5_000


@dataclass(frozen=True, slots=True)
class Finished:
    """How a job ended: its status and its result, or its failed reason and stack."""

    status: Literal["completed", "failed", "cancelled"]
    value: Any = None
    reason: str | None = None
    stack: list[str] = field(default_factory=list)


#: ``(queue, job_id) -> Finished | None``: the job's recorded end in ``_jobs``.
HistoryLookup = Callable[[str, str], Awaitable["Finished | None"]]


def _decoded(raw: Any) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


class QueueResults:
    """Follows one queue's event stream for the waiters of this process."""

    def __init__(self, client: aioredis.Redis, prefix: str, queue: str) -> None:
        self.client = client
        self.prefix = prefix
        self.queue = queue
        self._stream = keys.queue_key(prefix, queue, keys.EVENTS_SUFFIX)
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._positioned: asyncio.Future[None] | None = None

    async def position(self) -> str:
        """The id of the newest entry of the stream (``0-0`` when empty)."""
        newest: Any = await self.client.xrevrange(self._stream, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def check(self, job_id: str) -> Finished | Literal["missing"] | None:
        """The job's end as Redis has it; None while it has not ended; "missing" if gone."""
        job_key = keys.job_key(self.prefix, self.queue, job_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(job_key, "returnvalue", "failedReason", "stacktrace", "finishedOn")
            pipe.zscore(keys.queue_key(self.prefix, self.queue, "completed"), job_id)
            pipe.zscore(keys.queue_key(self.prefix, self.queue, "failed"), job_id)
            pipe.exists(job_key)
            (value, reason, stack, _finished), completed, failed, exists = await pipe.execute()
        if completed is not None:
            return Finished("completed", value=_decoded(value))
        if failed is not None:
            stacks = _decoded(stack)
            return Finished(
                "cancelled" if (reason or "").startswith("JobCancelled:") else "failed",
                reason=reason or "",
                stack=stacks if isinstance(stacks, list) else [],
            )
        return None if exists else "missing"

    async def wait(
        self, job_id: str, timeout: float | None, history: HistoryLookup | None
    ) -> Finished:
        """Wait until ``job_id`` ends; raise ``TimeoutError`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        wake: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(job_id, set()).add(wake)
        try:
            await self._ensure_reader()
            while True:
                found = await self.check(job_id)
                if found == "missing":
                    recorded = await history(self.queue, job_id) if history else None
                    if recorded is not None:
                        return recorded
                    raise ResultUnavailable(
                        f"job {self.queue}:{job_id} is not in Redis and has no row in _jobs "
                        "(removed before it was recorded, or never queued here)"
                    )
                if found is not None:
                    return found
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"job {self.queue}:{job_id} did not finish in {timeout:g} s")
                with contextlib.suppress(TimeoutError):
                    await within(asyncio.shield(wake), remaining)
                if wake.done():
                    wake = loop.create_future()
                    self._waiters[job_id].add(wake)
        finally:
            waiting = self._waiters.get(job_id, set())
            waiting.discard(wake)
            if not waiting:
                self._waiters.pop(job_id, None)
            if not self._waiters:
                await self.stop()

    async def _ensure_reader(self) -> None:
        """Start the reader (once) and wait until it holds a position in the stream."""
        if self._reader is None or self._reader.done():
            self._positioned = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(
                self._read(self._positioned), name=f"bullworker-results:{self.queue}"
            )
        assert self._positioned is not None
        await asyncio.shield(self._positioned)

    async def _read(self, positioned: asyncio.Future[None]) -> None:
        try:
            last = await self.position()
        except BaseException as exc:
            if not positioned.done():
                positioned.set_exception(exc)
            raise
        positioned.set_result(None)
        while self._waiters:
            try:
                reply: Any = await self.client.xread({self._stream: last}, block=BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the waiters' own checks notice a lasting outage
                log.debug("queue %s: reading events for results failed: %s", self.queue, exc)
                self._wake_all()  # let them look again, then go on reading
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get("event") in ("completed", "failed"):
                        self._wake(str(fields.get("jobId")))

    def _wake(self, job_id: str) -> None:
        for future in self._waiters.get(job_id, ()):
            if not future.done():
                future.set_result(None)

    def _wake_all(self) -> None:
        for job_id in list(self._waiters):
            self._wake(job_id)

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


class JobHandle(str, Generic[Out]):
    """The id of a queued job (it is that ``str``), which can also wait for the job's result.

    ``await handle.result(timeout=10)`` returns the result as the job class's
    ``Out`` type, or raises :class:`JobFailedError` (the remote failed reason,
    and stack when there is one) or ``TimeoutError``.
    """

    queue: str
    _waiter: Callable[[str, str, float | None], Awaitable[Finished]]
    _definition: JobDefinition | None

    def __new__(
        cls,
        job_id: str,
        *,
        queue: str,
        waiter: Callable[[str, str, float | None], Awaitable[Finished]],
        definition: JobDefinition | None = None,
    ) -> JobHandle[Out]:
        handle = super().__new__(cls, job_id)
        handle.queue = queue
        handle._waiter = waiter
        handle._definition = definition
        return handle

    @property
    def id(self) -> str:
        return str.__str__(self)

    async def finished(self, timeout: float | None = None) -> Finished:
        """Wait for the job to end and say how (no exception for a failure)."""
        return await self._waiter(self.queue, self.id, timeout)

    async def result(self, timeout: float | None = None) -> Out:
        """Wait for the job's result (validated as its class's ``Out``)."""
        return result_of(await self.finished(timeout), self.queue, self.id, self._definition)  # type: ignore[no-any-return]


def result_of(finished: Finished, queue: str, job_id: str, definition: JobDefinition | None) -> Any:
    """The typed result of a completed job, or :class:`JobFailedError` for a failed one."""
    if finished.status != "completed":
        raise JobFailedError(
            f"job {queue}:{job_id} {finished.status}: {finished.reason}",
            reason=finished.reason or "",
            stack=finished.stack,
            status=finished.status,
        )
    if definition is None:
        return finished.value
    return definition.result_from_wire(finished.value)
