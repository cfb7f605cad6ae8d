"""The job store contract: `JobRecord`, the `JobStore` interface, errors.

A store keeps one row per finished BullMQ job in the ``_jobs`` table. Python sees
aware UTC datetimes; the table holds naive UTC timestamps with millisecond
precision (see `to_naive_utc`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from bullworker.core.errors import StoreError as StoreError
from bullworker.core.errors import StoreUnavailable as StoreUnavailable
from bullworker.core.status import STATUSES, Status
from bullworker.history.store import schema as q


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One finished job, as written to and read back from ``_jobs``."""

    queue: str
    queue_id: str
    attempt: int
    name: str
    data: Any
    status: Status
    result: Any
    created_at: datetime
    should_execute_at: datetime
    executed_at: datetime | None
    completed_at: datetime
    trace_id: str | None = None
    recorded_at: datetime | None = None
    #: ``_jobs`` id of the failed job this one retries (``bullworker retry``), if any.
    retry_of: str | None = None
    #: The job's last progress (``job.updateProgress``: a number or an object), None if never.
    progress: Any = None
    #: Its last log lines (``job.log``), oldest first, at most ``JOBS_LOG_LINES``; None if none.
    logs: list[str] | None = None
    #: ``<queue>:<jobId>`` of its parent when it is a child in a flow, else None.
    parent: str | None = None

    def __post_init__(self) -> None:
        check_status(self.status)

    @property
    def id(self) -> str:
        """The row id, ``<queue>:<jobId>``."""
        return f"{self.queue}:{self.queue_id}"

    @property
    def reason(self) -> str | None:
        """``"<ExceptionClass>: <message>"`` of a failed or cancelled row, None otherwise."""
        if self.status == "completed":
            return None
        result = self.result
        return str(result.get("reason") or "") if isinstance(result, dict) else str(result)

    @property
    def duration(self) -> timedelta | None:
        """Processing time (finishedOn - processedOn), None if never processed."""
        if self.executed_at is None:
            return None
        return self.completed_at - self.executed_at


def check_status(status: str | None) -> None:
    """Raise ValueError unless `status` is None or one of `STATUSES`."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")


def to_naive_utc(value: datetime) -> datetime:
    """Aware datetime -> naive UTC truncated to milliseconds (naive input is taken as UTC)."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # One replace(): this runs four times per row written.
    return value.replace(tzinfo=None, microsecond=value.microsecond // 1000 * 1000)


def from_naive_utc(value: datetime) -> datetime:
    """Naive UTC datetime read from the table -> aware UTC datetime."""
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Filters:
    """What `JobStore.recent` and `JobStore.count` select; None matches every row."""

    queue: str | None = None
    name: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, placeholder: str, moment: Callable[[datetime], Any]) -> tuple[str, list[Any]]:
        """``WHERE ...`` (or ``""``) and its parameters, datetimes as ``moment`` writes them."""
        since, until = self.since, self.until
        return q.where_clause(
            placeholder,
            queue=self.queue,
            name=self.name,
            status=self.status,
            since=None if since is None else moment(since),
            until=None if until is None else moment(until),
        )


class JobStore(abc.ABC):
    """Durable store of finished jobs. Use as ``async with store:`` or open()/close().

    Filters shared by `recent` and `count`: exact ``queue``, ``name``,
    ``status``; ``since`` (inclusive) and ``until`` (exclusive) bound
    ``completedAt``.
    """

    def describe(self) -> str:
        """Where the rows go, without secrets, for log lines (``SQLite ./bullworker.sqlite3``)."""
        return repr(self)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and ensure the schema exists; calling it again is a no-op."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store may be opened again afterwards."""

    @abc.abstractmethod
    async def ensure_schema(self) -> None:
        """Create ``_jobs`` and its indexes if missing; safe to run concurrently."""

    async def maintain(self) -> None:
        """Periodic upkeep of the table, cheap when nothing is due (PostgreSQL: the
        partitions ahead, `partitions`); the recorder calls it before it writes."""
        return None

    @abc.abstractmethod
    async def insert_records(self, records: Sequence[JobRecord]) -> int:
        """Insert all records in one transaction; rows already present are kept.

        A row of the same job (same id, ``createdAt``, attempt and ``completedAt``)
        gets the record's progress and logs if they differ and it has no fewer log
        lines (a job read again after more lines came); another job's row is never
        touched. Returns the number of rows inserted or updated, so fewer than
        ``len(records)`` means some keys were taken already, by these jobs or by
        others. Raises StoreUnavailable on connection problems (nothing was
        written then).
        """

    async def recent(
        self,
        *,
        queue: str | None = None,
        name: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Matching records, newest ``completedAt`` first, at most `limit`."""
        check_status(status)
        return await self._recent(Filters(queue, name, status, since, until), max(limit, 0))

    @abc.abstractmethod
    async def _recent(self, filters: Filters, limit: int) -> list[JobRecord]:
        """`recent` once its arguments are checked."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> list[JobRecord]:
        """All rows of ``<queue>:<jobId>``, newest ``createdAt`` first."""

    @abc.abstractmethod
    async def retries_of(self, job_id: str) -> list[JobRecord]:
        """Rows whose ``retryOf`` is ``<queue>:<jobId>``, newest ``createdAt`` first."""

    @abc.abstractmethod
    async def children_of(self, parent_id: str) -> list[JobRecord]:
        """Rows of the children of the flow parent ``<queue>:<jobId>``, oldest first."""

    async def count(
        self,
        *,
        queue: str | None = None,
        name: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """Number of matching records."""
        check_status(status)
        return await self._count(Filters(queue, name, status, since, until))

    @abc.abstractmethod
    async def _count(self, filters: Filters) -> int:
        """`count` once its arguments are checked."""

    async def prune(
        self, *, older_than: datetime, status: str | None = None, batch_size: int = 5000
    ) -> int:
        """Delete rows with ``completedAt < older_than`` in batches; returns rows deleted."""
        check_status(status)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        total = 0
        while True:  # one short transaction per batch: other writers interleave
            deleted = await self._prune_batch(older_than, status, batch_size)
            total += deleted
            if deleted < batch_size:
                return total

    @abc.abstractmethod
    async def _prune_batch(self, older_than: datetime, status: str | None, limit: int) -> int:
        """Delete at most ``limit`` rows of `prune`'s; returns how many."""

    @abc.abstractmethod
    async def delete_record(self, record: JobRecord) -> int:
        """Delete the row of exactly ``record`` (same id, ``createdAt``, attempt, ``completedAt``
        and status): 1 if it was there, else 0. ``jobs cancel`` takes back a row it wrote for
        a job that a worker took meanwhile."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Round-trip to the database; raises StoreUnavailable if unreachable."""

    async def reachable(self) -> None:
        """Connect once, without opening the store; StoreUnavailable if that fails (a
        database server only: a file needs no connection)."""
        return None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
