"""Item 5: ``WorkerService.queue_job`` / ``queue_jobs`` against raw ``Queue.add`` / ``addBulk``.

One by one means awaited one after the other (a request handler queueing its
job); bulk means chunks of 1,000 in one call. Both sides run in this process
on their own prefix, alternating in blocks of 1,000 jobs, so that the noise of
a shared machine falls on both alike; each side's time is the sum of its blocks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import REDIS_URL, Plan, bull_connection, median, own_prefix

QUEUE = "bench"
BLOCK = 1000

Sender = Callable[[range], Awaitable[None]]


def _raw_senders(queue: Any) -> tuple[Sender, Sender]:
    async def one_by_one(block: range) -> None:
        for i in block:
            await queue.add("NoopJob", {"i": i}, {})

    async def bulk(block: range) -> None:
        await queue.addBulk([{"name": "NoopJob", "data": {"i": i}} for i in block])

    return one_by_one, bulk


def _bullworker_senders(service: Any, job: Any) -> tuple[Sender, Sender]:
    async def one_by_one(block: range) -> None:
        for i in block:
            await service.queue_job(job, {"i": i})

    async def bulk(block: range) -> None:
        await service.queue_jobs(job, [{"i": i} for i in block])

    return one_by_one, bulk


async def _pair(n: int, bulk: bool) -> dict[str, tuple[float, float]]:
    """Queue ``n`` jobs each way, alternating blocks; (seconds, CPU seconds) per side."""
    from bullmq import Queue

    from bench.app import NoopJob, registry
    from bullworker import AppConfig, create_app

    async with own_prefix("enq-raw") as raw_prefix, own_prefix("enq-bw") as bw_prefix:
        queue = Queue(QUEUE, {"prefix": raw_prefix, "connection": bull_connection()})
        config = AppConfig(
            environ={},
            redis_url=REDIS_URL,
            bull_prefix=bw_prefix,
            bull_queue=QUEUE,
            app_env="production",
        )
        app = create_app(config=config, registry=registry)
        sides = {
            "raw": _raw_senders(queue)[bulk],
            "bullworker": _bullworker_senders(app.worker_service, NoopJob)[bulk],
        }
        spent = {side: [0.0, 0.0] for side in sides}
        try:
            for send in sides.values():
                await send(range(-10, 0))  # connect and warm up before the clock starts
            for start in range(0, n, BLOCK):
                block = range(start, min(start + BLOCK, n))
                for side, send in sides.items():
                    began, cpu = time.perf_counter(), time.process_time()
                    await send(block)
                    spent[side][0] += time.perf_counter() - began
                    spent[side][1] += time.process_time() - cpu
        finally:
            await queue.close()
            await app.stop()
    return {side: (wall, cpu) for side, (wall, cpu) in spent.items()}


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    n = plan.enqueue_jobs
    result: dict[str, Any] = {"jobs_per_run": n, "block": BLOCK, "repeats": plan.repeats}
    for ours, raw, bulk in (("queue_job", "Queue.add", False), ("queue_jobs", "addBulk", True)):
        runs: dict[str, list[dict[str, float]]] = {ours: [], raw: []}
        for repeat in range(plan.repeats):
            spent = await _pair(n, bulk)
            for label, side in ((raw, "raw"), (ours, "bullworker")):
                wall, cpu = spent[side]
                runs[label].append(
                    {"jobs_per_s": round(n / wall, 1), "cpu_us_per_job": round(cpu * 1e6 / n, 1)}
                )
            log(
                f"  #{repeat + 1} {ours} {runs[ours][-1]['jobs_per_s']:8.0f} jobs/s"
                f" ({runs[ours][-1]['cpu_us_per_job']:.0f} us CPU/job),"
                f" {raw} {runs[raw][-1]['jobs_per_s']:8.0f} jobs/s"
                f" ({runs[raw][-1]['cpu_us_per_job']:.0f} us CPU/job)"
            )
        for label, values in runs.items():
            result[label] = {
                "jobs_per_s": round(median([v["jobs_per_s"] for v in values]), 1),
                "cpu_us_per_job": round(median([v["cpu_us_per_job"] for v in values]), 1),
                "runs": values,
            }
        each = [
            round(a["jobs_per_s"] / b["jobs_per_s"], 3)
            for a, b in zip(runs[ours], runs[raw], strict=True)
        ]
        result[f"{ours}/{raw}"] = {"ratio": median(each), "per_repeat": each}
    return result
