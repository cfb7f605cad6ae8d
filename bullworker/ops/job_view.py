"""One job as the dashboard's job page shows it: `live.show_job`, with the worker of a live one.

A job in Redis that runs or ran names its worker in the hash field ``processedBy``
(``pb``; ``<host>:<pid>`` for a bullworker runner, the worker's name for Node),
which `show_job` leaves out.
"""

from __future__ import annotations

from typing import Any

from bullworker.config.settings import AppConfig
from bullworker.core import keys
from bullworker.history.store import JobStore
from bullworker.ops.inspect import check_job_id
from bullworker.ops.live import show_job
from bullworker.transport.deadline import bounded
from bullworker.transport.probe import reachable_client


async def job_view(config: AppConfig, store: JobStore, job_id: str) -> list[dict[str, Any]]:
    """`show_job`'s details, the one read in Redis with ``processedBy`` (None if unknown)."""
    job_id = check_job_id(job_id, config.bull_queue)
    details = await show_job(config, store, job_id)
    if details and details[0].get("source") == "redis":
        queue, _, queue_id = job_id.partition(":")
        client = await reachable_client(config.redis_settings("bull"))
        try:
            key = keys.job_key(config.bull_prefix, queue, queue_id)
            worker = await bounded(config, f"read job {job_id}", client.hget(key, "pb"))
        finally:
            await client.aclose()
        details[0]["processedBy"] = None if worker is None else str(worker)
    return details
