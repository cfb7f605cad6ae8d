"""Read-only views of ``_jobs`` for the dashboard: job lists, throughput, failures grouped.

The list is a keyset page (newest ``completedAt`` first, then ``id``) of rows
without their payloads, results or log lines, so a page costs the same at the
first row and at the millionth. The SQL is in `schema` (`PG_LIST`,
`PG_THROUGHPUT`, `PG_FAILURE_GROUPS` and their SQLite twins); this module
runs it on either store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bullworker.history.store import schema as q
from bullworker.history.store import sql_views as v
from bullworker.history.store.base import (
    JobStore,
    StoreError,
    check_status,
    from_naive_utc,
    to_naive_utc,
)
from bullworker.history.store.postgres import PostgresJobStore
from bullworker.history.store.sqlite import SqliteJobStore

#: Longest text searched for in failed reasons.
MAX_TEXT = 200
#: Failures the first window of a text search reads (see `list_jobs`).
TEXT_WINDOW = 2000


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One row of a job list: what a table shows, not the payload or the result."""

    queue: str
    queue_id: str
    attempt: int
    name: str
    status: str
    #: ``"<ExceptionClass>: <message>"`` of a failed or cancelled row, else None.
    reason: str | None
    created_at: datetime
    executed_at: datetime | None
    completed_at: datetime
    retry_of: str | None = None
    parent: str | None = None

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.queue_id}"


@dataclass(frozen=True, slots=True)
class ListFilters:
    """What a job list selects; None matches every row.

    ``since`` (inclusive) and ``until`` (exclusive) bound ``completedAt``; ``text`` is a
    case-insensitive substring of the failed reason; ``before`` is the keyset bound, the
    (``completedAt``, ``id``) of the last row of the previous page.
    """

    queue: str | None = None
    name: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    before: tuple[datetime, str] | None = None
    #: Only failed and cancelled rows (those with a reason).
    failures: bool = False

    def where(self, placeholder: str, reason: str, moment: Callable[[datetime], Any]) -> Any:
        check_status(self.status)
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise ValueError(f"the text searched for is longer than {MAX_TEXT} characters")
        return v.list_where(
            placeholder,
            reason,
            queue=self.queue,
            name=self.name,
            status=self.status,
            since=None if self.since is None else moment(self.since),
            until=None if self.until is None else moment(self.until),
            text=self.text or None,
            before=None if self.before is None else (moment(self.before[0]), self.before[1]),
            failures=self.failures,
        )


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Failures of one job name with one reason: how many, the latest, on which queues."""

    name: str
    reason: str
    count: int
    last: datetime
    queues: list[str]


def _sqlite_ts(value: datetime) -> str:
    return to_naive_utc(value).isoformat(sep=" ", timespec="milliseconds")


def _moment(value: Any) -> datetime:
    """A timestamp column as read (a naive datetime, or SQLite's text) -> aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return from_naive_utc(value)


def _summary(row: Sequence[Any]) -> JobSummary:
    return JobSummary(
        queue=row[0],
        queue_id=row[1],
        attempt=row[2],
        name=row[3],
        status=row[4],
        reason=None if row[5] is None else str(row[5]),
        created_at=_moment(row[6]),
        executed_at=None if row[7] is None else _moment(row[7]),
        completed_at=_moment(row[8]),
        retry_of=row[9],
        parent=row[10],
    )


def _dialect(store: JobStore) -> tuple[str, str, Callable[[datetime], Any]]:
    """The placeholder, failed-reason expression and datetime writer of ``store``'s SQL."""
    if isinstance(store, PostgresJobStore):
        return "%s", v.PG_REASON, to_naive_utc
    if isinstance(store, SqliteJobStore):
        return "?", v.SQLITE_REASON, _sqlite_ts
    raise StoreError(f"{type(store).__name__} has no dashboard views")


async def _rows(store: JobStore, pg: str, lite: str, params: Sequence[Any], where: str = "") -> Any:
    """Run PostgreSQL's ``pg`` or SQLite's ``lite`` (``{where}`` filled in) on ``store``."""
    if isinstance(store, PostgresJobStore):
        statement = q.pg_statement(pg, store._table, where=where)
        async with store._connection() as conn:
            cur = await conn.execute(statement, params)
            return await cur.fetchall()
    assert isinstance(store, SqliteJobStore)
    text = lite.format(where=where)

    def select(conn: sqlite3.Connection) -> list[Any]:
        return conn.execute(text, params).fetchall()

    return await store._run(select)


async def list_jobs(store: JobStore, filters: ListFilters, limit: int) -> list[JobSummary]:
    """One page of matching rows, newest ``completedAt`` first, at most ``limit``.

    A text search goes down the failures of the other filters in windows of
    `TEXT_WINDOW` rows, then 4 times as many each time, each window one bounded
    range of an index: a planner that cannot tell how rare the text is would
    otherwise read every failure before it sorts them.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if not filters.text:
        return await _page(store, filters, limit)
    found: list[JobSummary] = []
    window, current = TEXT_WINDOW, filters
    while len(found) < limit:
        low = await _nth(store, _window(current), window)
        since = low if current.since is None or (low and low > current.since) else current.since
        found += await _page(store, replace(current, since=since), limit - len(found))
        if low is None or (current.since is not None and low <= current.since):
            break
        until = low if current.until is None else min(low, current.until)
        window, current = window * 4, replace(current, until=until)
    return found


def _window(filters: ListFilters) -> ListFilters:
    """The failures a text search's window counts: the keyset as a plain time bound, which a
    ``(..., "completedAt")`` index answers without reading the rows."""
    until = filters.until
    if filters.before is not None:
        bound = filters.before[0] + timedelta(milliseconds=1)  # completedAt <= the cursor's
        until = bound if until is None else min(until, bound)
    return replace(filters, text=None, failures=True, before=None, until=until)


async def _page(store: JobStore, filters: ListFilters, limit: int) -> list[JobSummary]:
    where, params = filters.where(*_dialect(store))
    rows = await _rows(store, v.PG_LIST, v.SQLITE_LIST, [*params, limit], where)
    return [_summary(row) for row in rows]


async def _nth(store: JobStore, filters: ListFilters, offset: int) -> datetime | None:
    """The ``completedAt`` of the matching row ``offset`` rows down, None past the last."""
    where, params = filters.where(*_dialect(store))
    rows = await _rows(store, v.PG_NTH, v.SQLITE_NTH, [*params, offset], where)
    return _moment(rows[0][0]) if rows else None


async def throughput(
    store: JobStore, since: datetime, bucket_seconds: int
) -> list[tuple[str, int, str, int]]:
    """``(queue, bucket, status, rows)`` of the rows finished since ``since``; a bucket is
    the start of its ``bucket_seconds`` window in seconds since 1970, UTC."""
    if bucket_seconds < 1:
        raise ValueError("bucket_seconds must be at least 1")
    moment = _dialect(store)[2]
    params = [bucket_seconds, moment(since)]
    rows = await _rows(store, v.PG_THROUGHPUT, v.SQLITE_THROUGHPUT, params)
    return [(str(r[0]), int(r[1]) * bucket_seconds, str(r[2]), int(r[3])) for r in rows]


async def failure_groups(store: JobStore, since: datetime, limit: int = 100) -> list[FailureGroup]:
    """Failed rows (not cancelled) finished since ``since``, grouped by name and reason,
    the largest groups first."""
    moment = _dialect(store)[2]
    params = ["failed", moment(since), limit]
    rows = await _rows(store, v.PG_FAILURE_GROUPS, v.SQLITE_FAILURE_GROUPS, params)
    return [
        FailureGroup(
            name=str(r[0]),
            reason="" if r[1] is None else str(r[1]),
            count=int(r[2]),
            last=_moment(r[3]),
            queues=sorted(str(r[4] or "").split(",")),
        )
        for r in rows
    ]
