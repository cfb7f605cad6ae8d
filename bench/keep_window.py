"""The keep window's costs: Redis memory per kept job, and the recorder's throughput.

Memory: ``KEEP_JOBS`` jobs with a typical payload (a JSON object of about 300
bytes in, one of about 100 out) are finished by a raw bullmq Worker in this
process and recorded with the default window, which keeps them all. Then
``MEMORY USAGE`` of each kept job's hash and of the completed set (per member),
the recorder's mark (a few hashes with and without it), and ``INFO memory``'s
``used_memory`` before and after the window is emptied (approximate on a
server others use).

Throughput, interleaved over ``plan.repeats``, the default window against none
(``KEEP_COMPLETED=0``, ``KEEP_FAILED=0``: removed as soon as recorded):

- recorder alone: the same backlog (``plan.backlog`` jobs finished by two raw
  workers) recorded by ``Recorder.record_batch()`` in this process until nothing
  is left to do (the window's trims included);
- end to end: ``bullworker start`` (one process, recording to PostgreSQL)
  draining ``plan.e2e_jobs`` queued jobs, then everything recorded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import (
    DATABASE_URL,
    REDIS_URL,
    Plan,
    Proc,
    bull_connection,
    fill,
    median,
    own_prefix,
    own_schema,
    python_env,
    redis_client,
    watch_drain,
)
from bench.recorder_bench import _make_backlog, _ready
from bench.scaling import QUEUE, start_argv, wait_recorded

#: Jobs kept for the memory measurement (the default window keeps 1,000 completed ones).
KEEP_JOBS = 1000
#: A typical payload: a JSON object of about 300 bytes.
PAYLOAD = {
    "user": {"id": 123456, "email": "ada.lovelace@example.com", "name": "Ada Lovelace"},
    "template": "welcome-email-v3",
    "locale": "en-GB",
    "variables": {"plan": "pro", "trial_days": 14, "referrer": "newsletter-2024-05"},
    "tags": ["signup", "email", "onboarding"],
    "requested_at": "2024-05-01T12:00:00.000Z",
}
RESULT = {"messageId": "0100018f3b2a-5c1e-4b7e-9f0a-3d2c1b0a9e8f-000000", "status": "sent"}


async def _finish_typical(prefix: str, n: int) -> None:
    """Queue ``n`` jobs of `PAYLOAD` and finish them with a raw Worker returning `RESULT`."""
    from bullmq import Queue, Worker

    queue = Queue(QUEUE, {"prefix": prefix, "connection": bull_connection()})
    try:
        await queue.addBulk([{"name": "SendEmail", "data": {**PAYLOAD, "n": i}} for i in range(n)])
    finally:
        await queue.close()

    async def process(job: Any, token: str) -> Any:
        return RESULT

    opts = {"prefix": prefix, "connection": bull_connection(), "concurrency": 50}
    worker = Worker(QUEUE, process, opts)
    client = redis_client()
    try:
        deadline = time.monotonic() + 60
        while await client.zcard(f"{prefix}:{QUEUE}:completed") < n:
            if time.monotonic() > deadline:
                raise TimeoutError("the typical jobs did not finish within 60 s")
            await asyncio.sleep(0.05)
    finally:
        await worker.close()
        await client.aclose()


def _recorder(prefix: str, store: Any, keep: Any) -> Any:
    from bullworker.config.settings import AppConfig
    from bullworker.history.recorder import Recorder
    from bullworker.transport.connection import redis_client as bw_client

    settings = AppConfig(environ={}, redis_url=REDIS_URL).redis_settings("bull")
    return Recorder(
        queue=QUEUE,
        prefix=prefix,
        redis=bw_client(settings),
        events_redis=lambda: bw_client(settings),
        store=_ready(store),
        batch_size=AppConfig(environ={}).recorder_batch_size,
        keep=keep,
    )


async def _used_memory(client: Any) -> int:
    return int((await client.info("memory"))["used_memory"])


async def memory(plan: Plan, log: Any) -> dict[str, Any]:
    """Bytes of Redis memory per kept job (see the module's doc)."""
    from bullworker.core import keys
    from bullworker.core.keep import KeepWindow
    from bullworker.history.store import open_store

    n = 100 if plan.smoke else KEEP_JOBS
    async with own_schema("keepmem") as schema, own_prefix("keepmem") as prefix:
        await _finish_typical(prefix, n)
        client = redis_client()
        store = open_store(DATABASE_URL, pg_schema=schema)
        await store.open()
        recorder = _recorder(prefix, store, KeepWindow())
        try:
            while await recorder.record_batch() or recorder.more:
                pass
            completed = keys.queue_key(prefix, QUEUE, "completed")
            ids = [str(i) for i in await client.zrange(completed, 0, -1)]
            assert len(ids) == n, f"{len(ids)} of {n} jobs kept"
            hashes = [
                await client.memory_usage(keys.job_key(prefix, QUEUE, i), samples=0) for i in ids
            ]
            member = (await client.memory_usage(completed, samples=0) or 0) / n
            marks = []
            for job_id in ids[:20]:
                key = keys.job_key(prefix, QUEUE, job_id)
                mark = await client.hget(key, keys.RECORDED_FIELD)
                with_mark = await client.memory_usage(key, samples=0) or 0
                await client.hdel(key, keys.RECORDED_FIELD)
                marks.append(with_mark - (await client.memory_usage(key, samples=0) or 0))
                await client.hset(key, keys.RECORDED_FIELD, mark)
            kept = await _used_memory(client)
            recorder.keep = KeepWindow(0, 0, 0.0)
            while await client.zcard(completed):
                await recorder.trim()
            emptied = await _used_memory(client)
        finally:
            await recorder.redis.aclose()
            await store.close()
            await client.aclose()
    hash_bytes = sum(h or 0 for h in hashes) / n
    result = {
        "jobs": n,
        "payload_bytes": len(_json(PAYLOAD)),
        "result_bytes": len(_json(RESULT)),
        "hash_bytes": round(hash_bytes),
        "set_member_bytes": round(member),
        "mark_bytes": round(median(marks)),
        "per_kept_job_bytes": round(hash_bytes + member),
        "used_memory_per_job_bytes": round((kept - emptied) / n),
        "window_1000_completed_mib": round((hash_bytes + member) * 1000 / 2**20, 2),
        "window_full_mib": round((hash_bytes + member) * 6000 / 2**20, 2),
    }
    log(
        f"  kept job: {result['per_kept_job_bytes']} B (hash {result['hash_bytes']}, of which the "
        f"mark {result['mark_bytes']}; set member {result['set_member_bytes']}); used_memory "
        f"{result['used_memory_per_job_bytes']} B/job"
    )
    return result


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode()


async def _recorder_alone(plan: Plan, keep: Any) -> dict[str, float]:
    from bullworker.history.store import open_store

    async with own_schema("keepalone") as schema, own_prefix("keepalone") as prefix:
        await _make_backlog(prefix, plan.backlog, plan.concurrency)
        store = open_store(DATABASE_URL, pg_schema=schema)
        await store.open()
        recorder = _recorder(prefix, store, keep)
        try:
            began, cpu = time.perf_counter(), time.process_time()
            while await recorder.record_batch() or recorder.more:
                pass
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            rows = await store.count(queue=QUEUE)
        finally:
            await recorder.redis.aclose()
            await store.close()
    return {"rows_per_s": rows / seconds, "cpu_us_per_row": cpu * 1e6 / max(rows, 1)}


async def _end_to_end(plan: Plan, keep: dict[str, str]) -> dict[str, float]:
    n = plan.e2e_jobs
    async with own_schema("keepe2e") as schema, own_prefix("keepe2e") as prefix:
        await fill(QUEUE, prefix, n, "NoopJob")
        env = python_env(
            prefix, BULL_QUEUE=QUEUE, RECORD_JOBS="true", DATABASE_URL=DATABASE_URL,
            DATABASE_SCHEMA=schema, **keep,
        )  # fmt: skip
        proc = await Proc.start(start_argv(1, plan.concurrency), env, "keep window e2e")
        try:
            drain = await watch_drain(QUEUE, prefix, n, limit=120 + n / 50, alive=proc.alive)
            settle = await wait_recorded(QUEUE, prefix, limit=120)
        finally:
            _, err = await proc.stop(grace=30)
        proc.check(err)
    return {"jobs_per_s": drain.rate, "recorded_after_drain_s": settle}


def _ratios(runs: dict[str, list[dict[str, float]]], figure: str) -> list[float]:
    """Per repeat, the window's figure over the figure without it (runs made back to back)."""
    pairs = zip(runs["window"], runs["at_once"], strict=True)
    return [window[figure] / at_once[figure] for window, at_once in pairs]


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    from bullworker.core.keep import KeepWindow

    windows = {"window": KeepWindow(), "at_once": KeepWindow(0, 0, 0.0)}
    settings = {"window": {}, "at_once": {"KEEP_COMPLETED": "0", "KEEP_FAILED": "0"}}
    alone: dict[str, list[dict[str, float]]] = {name: [] for name in windows}
    e2e: dict[str, list[dict[str, float]]] = {name: [] for name in windows}
    for _ in range(plan.repeats):
        for name in windows:  # interleaved: A, B, A, B...
            alone[name].append(await _recorder_alone(plan, windows[name]))
            e2e[name].append(await _end_to_end(plan, settings[name]))
    ratio_alone = median(_ratios(alone, "rows_per_s"))
    ratio_e2e = median(_ratios(e2e, "jobs_per_s"))
    result = {
        "memory": await memory(plan, log),
        "recorder_alone_rows_per_s": {
            name: round(median([r["rows_per_s"] for r in runs]), 1) for name, runs in alone.items()
        },
        "recorder_alone_cpu_us_per_row": {
            name: round(median([r["cpu_us_per_row"] for r in runs]), 1)
            for name, runs in alone.items()
        },
        "recorder_alone_window_vs_at_once": round(ratio_alone, 3),
        "end_to_end_jobs_per_s": {
            name: round(median([r["jobs_per_s"] for r in runs]), 1) for name, runs in e2e.items()
        },
        "end_to_end_window_vs_at_once": round(ratio_e2e, 3),
    }
    log(
        f"  keep window vs none: recorder alone {result['recorder_alone_rows_per_s']} rows/s "
        f"(x{ratio_alone:.3f}), end to end {result['end_to_end_jobs_per_s']} jobs/s "
        f"(x{ratio_e2e:.3f})"
    )
    return result
