"""Job lists over Redis and ``_jobs`` together, for the dashboard (and any script).

A job is in one of two places: in Redis while it waits, runs, or finished and
is not recorded yet; in ``_jobs`` once the recorder wrote it. `browse_jobs`
reads both for one filter and returns them apart, so each keeps its own order
and its own paging:

- ``live``: jobs in Redis, newest first (by when they finished, started or were
  queued), paged by offset among the newest `LIVE_WINDOW` of each state and queue;
- ``history``: ``_jobs`` rows, newest ``completedAt`` first, paged by a keyset
  cursor (`JobPage.next_cursor`), so a deep page costs what the first does.

The state decides where to look: a live state (``waiting``, ``active``...) is
only in Redis; ``completed``, ``failed`` and ``cancelled`` are rows of ``_jobs``,
and also jobs in Redis not recorded yet (a recorded job kept in Redis for the keep window
is listed once, as its row); no state means both, everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.status import STATUSES, failed_status
from bullworker.history.hashes import attempts_of, is_recorded
from bullworker.history.store import JobStore
from bullworker.history.store.views import MAX_TEXT, JobSummary, ListFilters, list_jobs
from bullworker.ops.inspect import OpsError, iso
from bullworker.ops.queues import known_queues
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client

#: BullMQ's states of a job in Redis that has not finished, as the dashboard names them.
LIVE_STATES = ("waiting", "prioritized", "active", "delayed", "waiting-children")
#: Every state a list can be filtered by.
STATES = (*LIVE_STATES, *STATUSES)
#: The jobs of each state and queue a live list looks at (the newest), at most.
LIVE_WINDOW = 1000
#: Rows on a page, at most.
MAX_LIMIT = 500
#: The Redis keys of each state: (key suffix, is a list, state of its jobs).
_KEYS: dict[str, tuple[tuple[str, bool], ...]] = {
    "waiting": (("wait", True), ("paused", True)),
    "prioritized": (("prioritized", False),),
    "active": (("active", True),),
    "delayed": (("delayed", False),),
    "waiting-children": (("waiting-children", False),),
    "completed": (("completed", False),),
    "failed": (("failed", False),),
    "cancelled": (("failed", False),),
}
_FIELDS = ("name", "timestamp", "delay", "processedOn", "finishedOn", "failedReason", "atm",
           "attemptsMade", "pb", keys.RECORDED_FIELD)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A job list's filter and page. None matches every job.

    ``since`` and ``until`` bound when a job finished (when it was queued, for one that
    has not finished); ``text`` is a case-insensitive substring of the failed reason.
    """

    queue: str | None = None
    state: str | None = None
    name: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    #: `JobPage.next_cursor` of the page before (history), or None for the first page.
    cursor: str | None = None
    #: Jobs in Redis skipped (the live list's page).
    offset: int = 0
    limit: int = 50

    def check(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise OpsError(f"state must be one of {', '.join(STATES)}, got {self.state!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise OpsError(f"limit must be from 1 to {MAX_LIMIT}")
        if not 0 <= self.offset < LIVE_WINDOW:
            raise OpsError(f"offset must be from 0 to {LIVE_WINDOW - 1}")
        if self.text is not None and len(self.text) > MAX_TEXT:
            raise OpsError(f"the text searched for is longer than {MAX_TEXT} characters")

    @property
    def live(self) -> bool:
        """Whether the list reads Redis: a first history page, or a live state."""
        return self.cursor is None or self.state in LIVE_STATES

    @property
    def history(self) -> bool:
        """Whether the list reads ``_jobs``: no state or a finished one, and no live page."""
        return self.state not in LIVE_STATES and self.offset == 0


@dataclass(frozen=True, slots=True)
class JobRow:
    """One job of a list, from Redis (``source`` ``redis``) or from ``_jobs``."""

    queue: str
    job_id: str
    name: str
    state: str
    source: Literal["redis", "_jobs"]
    created: datetime | None
    started: datetime | None
    finished: datetime | None
    attempt: int
    reason: str | None = None
    #: When a delayed job is due.
    due: datetime | None = None
    #: The worker running it or that ran it (BullMQ's ``processedBy``), jobs in Redis only.
    processed_by: str | None = None
    retry_of: str | None = None
    parent: str | None = None

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.job_id}"

    @property
    def moment(self) -> datetime:
        """When it finished, started, or was queued: the order of a live list."""
        return self.finished or self.started or self.created or datetime.fromtimestamp(0, UTC)

    @property
    def duration_ms(self) -> int | None:
        if self.started is None or self.finished is None:
            return None
        return round((self.finished - self.started).total_seconds() * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "queue": self.queue,
            "jobId": self.job_id,
            "name": self.name,
            "state": self.state,
            "source": self.source,
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "due": iso(self.due),
            "durationMs": self.duration_ms,
            "attempt": self.attempt,
            "reason": self.reason,
            "processedBy": self.processed_by,
            "retryOf": self.retry_of,
            "parent": self.parent,
        }


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job list: the jobs in Redis and the ``_jobs`` rows, each paged apart."""

    query: JobQuery
    live: list[JobRow] = field(default_factory=list)
    #: The offset of the live list's next page, None if this is its last.
    next_offset: int | None = None
    history: list[JobRow] = field(default_factory=list)
    #: The cursor of the history's next page, None if this is its last.
    next_cursor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "live": [row.to_dict() for row in self.live],
            "nextOffset": self.next_offset,
            "history": [row.to_dict() for row in self.history],
            "nextCursor": self.next_cursor,
        }


def encode_cursor(row: JobRow) -> str:
    """The cursor of the page after ``row``: its ``completedAt`` (ms) and its id."""
    assert row.finished is not None
    return f"{round(row.finished.timestamp() * 1000)}~{row.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    millis, sep, job_id = cursor.partition("~")
    if not (sep and millis.isdigit() and job_id):
        raise OpsError(f"not a page cursor: {cursor!r}")
    return datetime.fromtimestamp(int(millis) / 1000, UTC), job_id


def _row(summary: JobSummary) -> JobRow:
    return JobRow(
        queue=summary.queue,
        job_id=summary.queue_id,
        name=summary.name,
        state=summary.status,
        source="_jobs",
        created=summary.created_at,
        started=summary.executed_at,
        finished=summary.completed_at,
        attempt=summary.attempt,
        reason=summary.reason,
        retry_of=summary.retry_of,
        parent=summary.parent,
    )


async def browse_jobs(
    app: App, store: JobStore | None, query: JobQuery, *, queues: Sequence[str] | None = None
) -> JobPage:
    """The page of ``query`` (see the module's doc). ``queues`` are those a list over every
    queue reads in Redis (default: the app's and every queue found in Redis); ``store``
    None reads Redis only (``RECORD_JOBS=false``)."""
    query.check()
    page = JobPage(query)
    if query.live:
        live, more = await _live(app, query, queues)
        page = replace(page, live=live, next_offset=query.offset + len(live) if more else None)
    if query.history and store is not None:
        before = None if query.cursor is None else decode_cursor(query.cursor)
        filters = ListFilters(
            queue=query.queue, name=query.name, status=query.state, since=query.since,
            until=query.until, text=query.text, before=before,
        )  # fmt: skip
        try:
            found = await list_jobs(store, filters, query.limit + 1)
        except ValueError as exc:
            raise OpsError(str(exc)) from None
        rows = [_row(summary) for summary in found[: query.limit]]
        more = len(found) > query.limit
        page = replace(page, history=rows, next_cursor=encode_cursor(rows[-1]) if more else None)
    return page


def _ms(raw: str | None) -> datetime | None:
    if not raw or not raw.lstrip("-").isdigit():
        return None
    return datetime.fromtimestamp(int(raw) / 1000, UTC)


def _live_row(queue: str, job_id: str, state: str, raw: dict[str, str]) -> JobRow:
    reason = raw.get("failedReason") or None
    if state == "failed":
        state = failed_status(reason)
    created = _ms(raw.get("timestamp"))
    delay = raw.get("delay") or "0"
    due = None
    if state == "delayed" and created is not None and delay.isdigit():
        due = datetime.fromtimestamp(created.timestamp() + int(delay) / 1000, UTC)
    finished = _ms(raw.get("finishedOn")) if state in STATUSES else None
    return JobRow(
        queue=queue, job_id=job_id, name=raw.get("name") or "(unnamed)", state=state,
        source="redis", created=created, started=_ms(raw.get("processedOn")), finished=finished,
        attempt=int(attempts_of(raw)) if attempts_of(raw).isdigit() else 0, reason=reason,
        due=due, processed_by=raw.get("pb") or None,
    )  # fmt: skip


def _matches(row: JobRow, query: JobQuery) -> bool:
    if query.state in STATUSES and row.state != query.state:
        return False  # the failed set holds failed and cancelled jobs
    if query.name is not None and row.name != query.name:
        return False
    if query.since is not None and row.moment < query.since:
        return False
    if query.until is not None and row.moment >= query.until:
        return False
    if query.text:
        return row.reason is not None and query.text.casefold() in row.reason.casefold()
    return True


async def _live(
    app: App, query: JobQuery, queues: Sequence[str] | None
) -> tuple[list[JobRow], bool]:
    """The live list's page, and whether there are more."""
    config = app.config
    states = [query.state] if query.state is not None else [*LIVE_STATES, "completed", "failed"]
    filtered = any((query.name, query.since, query.until, query.text))
    window = LIVE_WINDOW if filtered else min(LIVE_WINDOW, query.offset + query.limit + 1)
    client = await reachable_client(config.redis_settings("bull"))
    try:
        if query.queue is not None:
            names: Sequence[str] = [query.queue]
        elif queues is not None:
            names = queues
        else:
            names = await bounded(config, "list the queues", known_queues(app, client))
        ranges = client.pipeline(transaction=False)
        sources: list[tuple[str, str]] = []
        for name in names:
            for state in states:
                for suffix, is_list in _KEYS[state]:
                    key = keys.queue_key(config.bull_prefix, name, suffix)
                    if is_list:
                        ranges.lrange(key, 0, window - 1)
                    else:
                        ranges.zrevrange(key, 0, window - 1)
                    sources.append((name, state))
        found = await bounded(config, "list the jobs in Redis", ranges.execute())
        wanted: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for (name, state), ids in zip(sources, found, strict=True):
            for job_id in ids:
                if (name, str(job_id)) not in seen:
                    seen.add((name, str(job_id)))
                    wanted.append((name, str(job_id), state))
        reads = client.pipeline(transaction=False)
        for name, job_id, _ in wanted:
            reads.hmget(keys.job_key(config.bull_prefix, name, job_id), list(_FIELDS))
        hashes = await bounded(config, "read the jobs in Redis", reads.execute()) if wanted else []
    finally:
        await client.aclose()
    rows = []
    for (name, job_id, state), values in zip(wanted, hashes, strict=True):
        raw = {f: str(v) for f, v in zip(_FIELDS, values, strict=True) if v is not None}
        # A job removed between the two reads is left out, and so is one recorded and kept in
        # Redis for the keep window: it is a row of ``_jobs``.
        if raw and not (state in STATUSES and is_recorded(raw)):
            row = _live_row(name, job_id, state, raw)
            if _matches(row, query):
                rows.append(row)
    rows.sort(key=lambda r: (r.moment, r.id), reverse=True)
    end = query.offset + query.limit
    return rows[query.offset : end], len(rows) > end
