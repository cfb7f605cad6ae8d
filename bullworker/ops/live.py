"""Jobs still in Redis: not recorded yet, kept after recording, or never (``RECORD_JOBS=false``).

``jobs show`` reads one of them; ``retry`` finds failed ones here when
``_jobs`` has no row for them. Keys come from `keys`; a job's hash is read as
the recorder reads it (`hashes.to_record`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.history.hashes import is_recorded, to_record
from bullworker.history.store import JobRecord, JobStore
from bullworker.ops.family import job_family
from bullworker.ops.inspect import OpsError, check_job_id, job_detail
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client


async def _read(
    config: AppConfig, job_id: str, *, logs: bool = False
) -> tuple[str, dict[str, str], list[str]] | None:
    """BullMQ's state, the hash fields of ``<queue>:<jobId>`` and, with ``logs``, its last
    ``JOBS_LOG_LINES`` log lines (those the recorder will keep); None if it is not there."""
    queue_name, _, queue_id = check_job_id(job_id).partition(":")
    client = await reachable_client(config.redis_settings("bull"))
    queue = open_queue(config, queue_name)
    lines: list[str] = []
    try:
        raw = await bounded(
            config,
            f"read job {job_id}",
            client.hgetall(keys.job_key(config.bull_prefix, queue_name, queue_id)),
        )
        if not raw:
            return None
        state = str(await bounded(config, f"read job {job_id}", queue.getJobState(queue_id)))
        if logs and config.jobs_log_lines:
            logs_key = keys.job_logs_key(config.bull_prefix, queue_name, queue_id)
            last = client.lrange(logs_key, -config.jobs_log_lines, -1)
            lines = [str(line) for line in await bounded(config, f"read job {job_id}", last)]
    finally:
        await client.aclose()
        await close_queue(queue, config.redis_timeout)
    return state, {str(k): str(v) for k, v in raw.items()}, lines


async def job_in_redis(
    config: AppConfig, job_id: str, *, unrecorded: bool = False
) -> dict[str, Any] | None:
    """`job_detail` of ``<queue>:<jobId>`` as it is in Redis now, None if it is not there
    (with ``unrecorded``, also None when it finished and that run is recorded).

    A job waiting, delayed or running has not been recorded yet; a finished
    one is there until the recorder has written it, then for the keep window (or
    for good when ``RECORD_JOBS`` is off). ``status`` is BullMQ's state of the job;
    its progress and log lines are those so far.
    """
    found = await _read(config, job_id, logs=True)
    if found is None:
        return None
    state, fields, lines = found
    if unrecorded and state in keys.FINISHED_SETS and is_recorded(fields):
        return None
    queue_name, _, queue_id = job_id.partition(":")
    # Read as a failed row when it failed, or when an earlier attempt did (another is due).
    failed = state == "failed" or (state != "completed" and bool(fields.get("failedReason")))
    detail = job_detail(
        to_record(
            queue_name,
            queue_id,
            "failed" if failed else "completed",
            fields,
            lines,
            prefix=config.bull_prefix,
        )
    )
    detail["source"] = "redis"
    if state not in keys.FINISHED_SETS:  # not finished: no result or finish time yet
        detail["status"] = state
        detail.pop("result", None)
        detail["timings"].update(finished=None, duration_ms=None)
    return detail


async def failed_in_redis(config: AppConfig, job_id: str) -> JobRecord | None:
    """``<queue>:<jobId>`` as a failed row, if it has failed for good (not cancelled) and is
    still in Redis."""
    found = await _read(config, job_id)
    if found is None or found[0] != "failed":
        return None
    queue_name, _, queue_id = job_id.partition(":")
    record = to_record(queue_name, queue_id, "failed", found[1])
    return record if record.status == "failed" else None


async def failed_jobs_in_redis(
    config: AppConfig,
    queues: list[str],
    *,
    name: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[JobRecord]:
    """Jobs failed for good (not cancelled) in Redis on ``queues``, as failed rows, newest first.

    Among the newest ``limit`` of each queue (since ``since``), those named ``name``.
    """
    client = await reachable_client(config.redis_settings("bull"))
    found: list[JobRecord] = []
    low = "-inf" if since is None else int(since.timestamp() * 1000)
    try:
        for queue in queues:
            failed_set = keys.queue_key(config.bull_prefix, queue, "failed")
            ids = await bounded(
                config,
                f"read the failed jobs of queue {queue}",
                client.zrevrangebyscore(failed_set, "+inf", low, start=0, num=limit),
            )
            job_ids = [str(job_id) for job_id in ids]
            reads = client.pipeline(transaction=False)  # one round trip for all the hashes
            for queue_id in job_ids:
                reads.hgetall(keys.job_key(config.bull_prefix, queue, queue_id))
            hashes = await bounded(
                config, f"read the failed jobs of queue {queue}", reads.execute()
            )
            for queue_id, raw in zip(job_ids, hashes, strict=True):
                fields = {str(k): str(v) for k, v in raw.items()}  # decoded by the client
                if fields and (name is None or fields.get("name") == name):
                    record = to_record(queue, queue_id, "failed", fields)
                    if record.status == "failed":
                        found.append(record)
    finally:
        await client.aclose()
    found.sort(key=lambda r: r.completed_at, reverse=True)
    return found[:limit]


async def show_job(config: AppConfig, store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """``jobs show``: `job_in_redis` if it is there and not recorded, then every recorded run,
    newest first.

    ``job_id`` is ``<queue>:<jobId>``, or a bare ``<jobId>`` of ``BULL_QUEUE``. Each has
    the job's family in a flow (`family.job_family`): ``parent`` (None) and ``children``.
    """
    job_id = check_job_id(job_id, config.bull_queue)
    live = await job_in_redis(config, job_id, unrecorded=True)  # a recorded one is a row
    rows = await store.get(job_id)
    if live is None and not rows:  # recorded and still kept in Redis, but its row was pruned
        live = await job_in_redis(config, job_id)
    if live is None and not rows:
        raise OpsError(f"no job {job_id} in Redis or in _jobs")
    details = ([live] if live else []) + [job_detail(row) for row in rows]
    parent = next((d["parent"]["id"] for d in details if d.get("parent")), None)
    family = await job_family(config, store, job_id, parent)
    for detail in details:
        detail.update(family)
    return details
