"""A job's family in a flow, for ``jobs show``: its parent and its children, each with its state.

A job's state is BullMQ's while it is in Redis (``waiting-children``, ``active``,
``completed``...), else the status of its latest row in ``_jobs``. A parent's
children are its recorded children (the ``parent`` column) and, while the
parent is in Redis, the children BullMQ 6 keeps beside it: ``:dependencies``
(not finished: ``unprocessed``), ``:processed`` (completed), ``:failed``
(failed and ignored: ``ignored``) and ``:unsuccessful`` (failed the parent:
``failed``), Node's ``getDependencies`` names in each child's ``dependency``.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.history.store import JobRecord, JobStore
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client

#: A parent's keys of its children, with Node's ``getDependencies`` name of each.
_DEPENDENCIES = (
    (keys.DEPENDENCIES_SUFFIX, "unprocessed"),
    (keys.PROCESSED_SUFFIX, "processed"),
    (keys.IGNORED_SUFFIX, "ignored"),
    (keys.UNSUCCESSFUL_SUFFIX, "failed"),
)


def _member(
    job_id: str, name: str | None, status: str | None, source: str | None
) -> dict[str, Any]:
    return {"id": job_id, "name": name, "status": status, "source": source}


def _latest(rows: list[JobRecord]) -> dict[str, JobRecord]:
    """The newest row of each job id."""
    found: dict[str, JobRecord] = {}
    for record in rows:
        known = found.get(record.id)
        if known is None or (record.created_at, record.attempt) > (
            known.created_at,
            known.attempt,
        ):
            found[record.id] = record
    return found


class _Live:
    """Reads jobs in Redis: hash fields in one round trip, states with one Queue per queue."""

    def __init__(self, config: AppConfig, client: aioredis.Redis) -> None:
        self.config = config
        self.client = client
        self.queues: dict[str, Any] = {}

    def key(self, job_id: str) -> str:
        queue, _, queue_id = job_id.partition(":")
        return keys.job_key(self.config.bull_prefix, queue, queue_id)

    async def names(self, job_ids: list[str]) -> dict[str, str]:
        """The names of those of ``job_ids`` that have a hash in Redis."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.key(job_id), "name")
        found = await bounded(self.config, "read the jobs of a flow", pipe.execute())
        return {job_id: str(name) for job_id, name in zip(job_ids, found, strict=True) if name}

    async def state(self, job_id: str) -> str | None:
        queue_name, _, queue_id = job_id.partition(":")
        queue = self.queues.get(queue_name)
        if queue is None:
            queue = self.queues[queue_name] = open_queue(self.config, queue_name)
        state = await bounded(
            self.config, f"read the state of job {job_id}", queue.getJobState(queue_id)
        )
        return None if state == "unknown" else str(state)

    async def dependencies(self, parent: str) -> dict[str, str]:
        """The children BullMQ keeps beside the parent ``parent``: id -> dependency name."""
        pipe = self.client.pipeline(transaction=False)
        base = self.key(parent)
        pipe.smembers(base + keys.DEPENDENCIES_SUFFIX)
        pipe.hkeys(base + keys.PROCESSED_SUFFIX)
        pipe.hkeys(base + keys.IGNORED_SUFFIX)
        pipe.zrange(base + keys.UNSUCCESSFUL_SUFFIX, 0, -1)
        replies = await bounded(self.config, f"read the children of {parent}", pipe.execute())
        found: dict[str, str] = {}
        for (_, dependency), members in zip(_DEPENDENCIES, replies, strict=True):
            for key in members:
                found[keys.job_ref(self.config.bull_prefix, str(key))] = dependency
        return found

    async def close(self) -> None:
        queues, self.queues = list(self.queues.values()), {}
        for queue in queues:
            await close_queue(queue, self.config.redis_timeout)


async def job_family(
    config: AppConfig, store: JobStore, job_id: str, parent: str | None
) -> dict[str, Any]:
    """``{"parent": ..., "children": [...]}`` of ``job_id`` (``<queue>:<jobId>``), each
    ``{"id", "name", "status", "source"}`` (``redis``, ``_jobs``, or None when the job is in
    neither), each child also with its ``dependency`` (None once the parent left Redis).

    ``parent`` is the job's parent as its hash or row says (None for no parent).
    """
    client = await reachable_client(config.redis_settings("bull"))
    live = _Live(config, client)
    try:
        family: dict[str, Any] = {"parent": None, "children": []}
        if parent is not None:
            family["parent"] = await _one(live, store, parent)
        dependencies = await live.dependencies(job_id)
        recorded = _latest(await store.children_of(job_id))
        child_ids = sorted(set(dependencies) | set(recorded))
        names = await live.names(child_ids) if child_ids else {}
        for child in child_ids:
            row = recorded.get(child)
            state = await live.state(child) if child in names else None
            if state is not None:
                member = _member(child, names[child], state, "redis")
            elif row is not None:
                member = _member(child, row.name, row.status, "_jobs")
            else:  # removed unrecorded (removeOnComplete, removeOnFail)
                member = _member(child, None, None, None)
            member["dependency"] = dependencies.get(child)
            family["children"].append(member)
        return family
    finally:
        await live.close()
        await client.aclose()


async def _one(live: _Live, store: JobStore, job_id: str) -> dict[str, Any]:
    """One job with its state: in Redis, else its latest row, else unknown."""
    names = await live.names([job_id])
    state = await live.state(job_id) if job_id in names else None
    if state is not None:
        return _member(job_id, names[job_id], state, "redis")
    rows = _latest(await store.get(job_id))
    if rows:
        row = rows[job_id]
        return _member(job_id, row.name, row.status, "_jobs")
    return _member(job_id, None, None, None)
