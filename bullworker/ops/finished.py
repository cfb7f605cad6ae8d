"""Finished jobs that ``bullworker queues`` removes from Redis: recorded first.

On a recorded queue a finished job leaves Redis only the way the recorder
makes it leave: its ``_jobs`` row is written first, then it is removed if it
is still the same finished job, unchanged (same finish, attempt, progress and
log lines), with the recorder's own scripts (`FETCH_JOBS`, `REMOVE_RECORDED`).
A job that changed meanwhile, or whose row key another job's row holds, stays
in Redis, where the recorder deals with it as it does with every job.

Which queues are recorded: with ``RECORD_JOBS`` on, the app's queues
(`app_queues`) and any queue a recorder leader holds (a runner of another
app, ``RECORD_QUEUES``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from bullworker.app import App
from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.core.status import Status
from bullworker.history.hashes import attempts_of, to_record
from bullworker.history.script_calls import FetchJobs, RemoveRecorded
from bullworker.history.store import JobRecord, JobStore
from bullworker.ops.inspect import app_queues, read_leader
from bullworker.transport.deadline import bounded


async def is_recorded(app: App, client: aioredis.Redis, queue: str) -> bool:
    """Whether finished jobs of ``queue`` go to ``_jobs`` (see the module's doc)."""
    config = app.config
    if not config.record_jobs:
        return False
    if queue in app_queues(app):
        return True
    leader = read_leader(client, config.bull_prefix, queue)
    return await bounded(config, f"read the recorder leader of {queue}", leader) is not None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record_and_remove` did with the jobs it was given."""

    #: Recorded in ``_jobs``, then removed from Redis.
    removed: int = 0
    #: Left in Redis: they changed meanwhile (retried, a new log line), or another
    #: job's row holds their key; the recorder takes them as usual.
    kept: int = 0
    #: No longer in the set (removed, retried or recorded by someone else meanwhile).
    missing: int = 0

    def __add__(self, other: Recorded) -> Recorded:
        return Recorded(
            self.removed + other.removed, self.kept + other.kept, self.missing + other.missing
        )


async def record_and_remove(
    config: AppConfig,
    client: aioredis.Redis,
    store: JobStore,
    queue: str,
    status: Status,
    job_ids: Sequence[str],
) -> Recorded:
    """Record the finished jobs ``job_ids`` of the ``status`` set of ``queue``, then remove
    those that are unchanged. StoreError (nothing removed) if the rows cannot be written."""
    if not job_ids:
        return Recorded()
    prefix = config.bull_prefix
    finished_set = keys.queue_key(prefix, queue, status)
    job_prefix = keys.job_key(prefix, queue, "")
    fetch = FetchJobs(client)
    reply = await bounded(
        config,
        f"read the {status} jobs of queue {queue}",
        fetch(keys=[finished_set], args=[job_prefix, config.jobs_log_lines, *job_ids]),
    )
    listed = json.loads(reply)
    found: list[tuple[str, dict[str, str], str]] = []  # id, hash, log mark
    records: list[JobRecord] = []
    for job_id, fields, lines, mark in listed if isinstance(listed, list) else []:
        raw = dict(zip(fields[::2], fields[1::2], strict=True)) if fields else {}
        if raw:
            found.append((job_id, raw, mark))
            records.append(to_record(queue, job_id, status, raw, lines or None))
    missing = len(job_ids) - len(found)
    if not records:
        return Recorded(missing=missing)
    if await store.insert_records(records) < len(records):
        found = [
            entry for entry, own in zip(found, await _own_rows(store, records), strict=True) if own
        ]
    removed = await _remove_unchanged(config, client, queue, status, found) if found else 0
    return Recorded(removed=removed, kept=len(records) - removed, missing=missing)


async def _own_rows(store: JobStore, records: list[JobRecord]) -> list[bool]:
    """Per record, whether the row with its key is its own (safe to remove the job): none
    there, or one of the same run (as `Recorder._own_rows` decides)."""
    own = []
    for record in records:
        rows = await store.get(record.id)
        same = [r for r in rows if (r.created_at, r.attempt) == (record.created_at, record.attempt)]
        own.append(not same or same[0].completed_at == record.completed_at)
    return own


async def _remove_unchanged(
    config: AppConfig,
    client: aioredis.Redis,
    queue: str,
    status: Status,
    found: list[tuple[str, dict[str, str], str]],
) -> int:
    """`REMOVE_RECORDED` on the recorded jobs: how many were still unchanged, and removed."""
    prefix = config.bull_prefix
    job_keys = [keys.queue_key(prefix, queue, status)]
    args: list[str | int] = [keys.deduplication_key_prefix(prefix, queue), config.jobs_log_lines]
    for job_id, raw, mark in found:
        job_key = keys.job_key(prefix, queue, job_id)
        job_keys += [job_key, *(job_key + suffix for suffix in keys.JOB_SUBKEY_SUFFIXES)]
        args += [job_id, raw.get("finishedOn", ""), attempts_of(raw), mark]
    remove = RemoveRecorded(client)
    what = f"remove the recorded {status} jobs of queue {queue}"
    return int(await bounded(config, what, remove(keys=job_keys, args=args)))


async def record_and_remove_older(
    config: AppConfig,
    client: aioredis.Redis,
    store: JobStore,
    queue: str,
    status: Status,
    *,
    cutoff_ms: int | None = None,
    limit: int | None = None,
) -> Recorded:
    """`record_and_remove` the oldest jobs of a finished set, in batches of
    ``RECORDER_BATCH_SIZE``: those that finished before ``cutoff_ms`` (all without), at
    most ``limit`` of them (as BullMQ's ``clean`` picks them)."""
    finished_set = keys.queue_key(config.bull_prefix, queue, status)
    high = "+inf" if cutoff_ms is None else str(cutoff_ms)
    done = Recorded()
    looked = 0
    while limit is None or looked < limit:
        want = config.recorder_batch_size
        if limit is not None:
            want = min(want, limit - looked)
        # Jobs left in Redis keep their place at the head of the set: skip them.
        ids = await bounded(
            config,
            f"read the {status} jobs of queue {queue}",
            client.zrangebyscore(finished_set, "-inf", high, start=done.kept, num=want),
        )
        job_ids = [str(job_id) for job_id in ids]
        done += await record_and_remove(config, client, store, queue, status, job_ids)
        looked += len(job_ids)
        if len(job_ids) < want:
            break
    return done
