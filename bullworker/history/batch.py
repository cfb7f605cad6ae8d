"""One recorder batch as `scripts.FETCH_NEW` reads it, and the ``_jobs`` checks it needs.

`Batch.parse` reads the script's reply: the finished jobs to record (`Finished`)
and those whose hash is missing (`Gone`). `own_rows` keeps the jobs whose row is
theirs (safe to mark or remove), `lost_jobs` the gone ones without a row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bullworker.core import keys
from bullworker.core.status import Status
from bullworker.history.store import JobRecord, JobStore

log = logging.getLogger("bullworker.recorder")

#: Gone jobs of one batch checked against ``_jobs`` (a query each); more are counted lost.
LOST_CHECKS_PER_BATCH = 50
#: Milliseconds between a finish event's time (the Redis server's clock) and ``finishedOn``
#: (the worker's) within which a row of the same job id counts as that job's.
CLOCK_TOLERANCE_MS = 60_000
_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished job as a fetch read it."""

    status: Status
    job_id: str
    score: str  # its score in the set (finishedOn), as Redis wrote it
    raw: dict[str, str]  # its hash
    logs: list[str]  # its last log lines, oldest first
    mark: str  # what the marking checks: see `scripts._KEPT_LOGS`


@dataclass(frozen=True, slots=True)
class Gone:
    """A finished job whose hash is missing: in its set still, or named by an event."""

    status: str
    job_id: str
    ms: int  # its finishedOn (in a set) or its event's time
    in_set: bool


def _items(value: Any) -> list[Any]:
    """A JSON list from Lua: cjson writes an empty one as ``{}``."""
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class Batch:
    """What `scripts.FETCH_NEW` read (its doc has the fields)."""

    cursor: str
    more: bool
    gap: bool
    scanned: bool
    #: Where the scan of each finished set goes on ("-inf": from its start).
    resume: dict[str, str] = field(default_factory=dict)
    jobs: list[Finished] = field(default_factory=list)
    gone: list[Gone] = field(default_factory=list)

    @classmethod
    def parse(cls, reply: str | bytes) -> Batch:
        found = json.loads(reply)
        jobs = [
            Finished(
                status, job_id, score, dict(zip(fields[::2], fields[1::2], strict=True)),
                _items(lines), mark,
            )
            for status, job_id, score, fields, lines, mark in _items(found["jobs"])
        ]  # fmt: skip
        gone = [
            Gone(status, job_id, int(float(ms)), bool(in_set))
            for status, job_id, ms, in_set in _items(found["gone"])
        ]
        resume = {str(k): str(v) for k, v in found["resume"].items()}
        return cls(
            str(found["cursor"]), found["more"], found["gap"], found["scanned"], resume, jobs, gone
        )


async def lost_jobs(store: JobStore, queue: str, gone: list[Gone]) -> list[Gone]:
    """The ``gone`` jobs without a row in ``_jobs``: a row of the same id that finished within
    `CLOCK_TOLERANCE_MS` is theirs (recorded, then removed by someone else). Beyond
    `LOST_CHECKS_PER_BATCH` they are counted lost unchecked."""
    lost = []
    for number, entry in enumerate(gone):
        if number < LOST_CHECKS_PER_BATCH:
            rows = await store.get(f"{queue}:{entry.job_id}")
            finished = (round(row.completed_at.timestamp() * 1000) for row in rows)
            if any(abs(ms - entry.ms) <= CLOCK_TOLERANCE_MS for ms in finished):
                continue
        lost.append(entry)
    return lost


def log_lost(queue: str, entry: Gone) -> None:
    """Say why a job was lost to ``_jobs`` and how to fix its producer."""
    option = "removeOnComplete" if entry.status == "completed" else "removeOnFail"
    log.warning(
        "queue %s: job %s %s and left Redis before it was recorded in _jobs (its producer sets "
        "%s, or another client removed it); such jobs are counted by `bullworker stats` (LOST) "
        "and `bullworker doctor`. Fix the producer: leave %s unset on recorded queues; the "
        "recorder removes finished jobs itself once they are recorded, after the keep window "
        "(KEEP_COMPLETED, KEEP_FAILED, KEEP_AGE, QUEUE_KEEP)",
        queue, entry.job_id, entry.status, option, option,
    )  # fmt: skip


def _earlier_run(raw: dict[str, str], row: JobRecord) -> bool:
    """Whether ``row`` (same id, ``createdAt`` and attempt) is of an earlier run of this very
    job: its hash carries the recorder's mark, so it was recorded before and has stayed in
    Redis since (BullMQ adds no job over an existing id, so a job re-added with the id of
    one removed has no mark), and ``row`` finished before this run."""
    return bool(raw.get(keys.RECORDED_FIELD)) and row.completed_at < _finished(raw)


def _finished(raw: dict[str, str]) -> datetime:
    finished = raw.get("finishedOn", "")
    return datetime.fromtimestamp(int(finished) / 1000, UTC) if finished.isdigit() else _NEVER


async def own_rows(
    store: JobStore, queue: str, found: list[Finished], records: list[JobRecord], clashes: set[str]
) -> tuple[list[Finished], int]:
    """The jobs of ``found`` whose row in ``_jobs`` is theirs, safe to mark or remove, and
    the rows written meanwhile.

    A row already there is normally this very job's, written by a batch that
    stopped before its marking (or the same read, when a concurrent recorder
    wrote it already). A row of the same key from an earlier run of this job
    (retried with its attempts reset, so the same attempt again) is replaced by
    this run's. Another job with the same id, ``createdAt`` and attempt (a
    reused id with an explicit ``timestamp`` option) would lose its record if
    removed: it stays in Redis, and is reported once (``clashes`` holds those
    reported).
    """
    mine, written = [], 0
    for entry, record in zip(found, records, strict=True):
        rows = await store.get(record.id)
        same = [r for r in rows if (r.created_at, r.attempt) == (record.created_at, record.attempt)]
        if not same or same[0].completed_at == record.completed_at:
            mine.append(entry)
        elif _earlier_run(entry.raw, same[0]):
            await store.delete_record(same[0])
            written += await store.insert_records([record])
            mine.append(entry)
        elif record.id not in clashes:
            clashes.add(record.id)
            log.error(
                "queue %s: job %s cannot be recorded: _jobs already has a row with its id, "
                "createdAt and attempt from another job; it stays in Redis",
                queue, record.id,
            )  # fmt: skip
    return mine, written
