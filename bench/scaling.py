"""Items 3 and 6: ``bullworker start --processes 1`` vs ``2``, and a worker's memory over 100k jobs.

Both run the real command line (``python -m bullworker start --app bench.app:app``)
as a user would, configured by the environment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import (
    DATABASE_URL,
    Plan,
    Proc,
    children,
    fill,
    median,
    own_prefix,
    own_schema,
    python,
    python_env,
    redis_client,
    rss_kib,
    tree_cpu,
    watch_drain,
)

QUEUE = "bench"


def start_argv(processes: int, concurrency: int) -> list[str]:
    return [
        python(), "-m", "bullworker", "start", "--app", "bench.app:app",
        "--processes", str(processes), "--concurrency", str(concurrency),
        "--log-level", "WARNING",
    ]  # fmt: skip


async def drain_with_processes(processes: int, plan: Plan, workload: str) -> dict[str, Any]:
    """Time ``bullworker start --processes N`` draining ``plan.jobs`` queued jobs."""
    name = {"noop": "NoopJob", "sleep": "SleepJob"}[workload]
    async with own_prefix(f"p{processes}") as prefix:
        await fill(QUEUE, prefix, plan.jobs, name)
        env = python_env(prefix, BULL_QUEUE=QUEUE, RECORD_JOBS="false")
        proc = await Proc.start(
            start_argv(processes, plan.concurrency), env, f"--processes {processes}"
        )
        try:
            drain = await watch_drain(
                QUEUE,
                prefix,
                plan.jobs,
                limit=60 + plan.jobs / 50,
                alive=proc.alive,
                cpu=lambda: tree_cpu(proc.pid),
            )
        finally:
            _, err = await proc.stop(grace=30)
        proc.check(err)
    return {
        "jobs": drain.jobs,
        "seconds": round(drain.seconds, 3),
        "jobs_per_s": round(drain.rate, 1),
        "worker_cpu_ms_per_job": round(drain.cpu * 1000 / drain.jobs, 3),
        "redis_cpu_ms_per_job": round(drain.redis_cpu * 1000 / drain.jobs, 3),
    }


async def run_scaling(plan: Plan, log: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"jobs_per_run": plan.jobs, "repeats": plan.repeats, "workloads": {}}
    for workload in ("noop", "sleep"):
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for repeat in range(plan.repeats):
            for processes in (1, 2):
                figures = await drain_with_processes(processes, plan, workload)
                runs[processes].append(figures)
                log(
                    f"  {workload:5} #{repeat + 1} --processes {processes}"
                    f" {figures['jobs_per_s']:8.0f} jobs/s ({figures['seconds']:.1f} s)"
                )
        one = median([r["jobs_per_s"] for r in runs[1]])
        two = median([r["jobs_per_s"] for r in runs[2]])
        each = [
            round(b["jobs_per_s"] / a["jobs_per_s"], 3)
            for a, b in zip(runs[1], runs[2], strict=True)
            if a["jobs_per_s"]
        ]
        result["workloads"][workload] = {
            "processes_1": {"jobs_per_s": round(one, 1), "runs": runs[1]},
            "processes_2": {"jobs_per_s": round(two, 1), "runs": runs[2]},
            "speedup": round(median(each), 3),
            "per_repeat": each,
        }
    return result


async def wait_recorded(queue: str, prefix: str, limit: float) -> float:
    """Wait until no finished job waits to be recorded (those recorded may stay in Redis for
    the keep window); seconds waited."""
    from bullworker.history.backlog import recording_backlog

    client = redis_client()
    began = time.monotonic()
    try:
        while True:
            left = (await recording_backlog(client, prefix, queue)).total
            if left == 0:
                return time.monotonic() - began
            if time.monotonic() - began > limit:
                raise TimeoutError(f"{left} finished jobs still unrecorded after {limit} s")
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def run_memory(plan: Plan, log: Any) -> dict[str, Any]:
    """RSS of one ``bullworker start`` process (recording on, PostgreSQL) over many jobs."""
    first, total = plan.memory_first, plan.memory_total
    async with own_schema("mem") as schema, own_prefix("mem") as prefix:
        env = python_env(
            prefix,
            BULL_QUEUE=QUEUE,
            RECORD_JOBS="true",
            DATABASE_URL=DATABASE_URL,
            DATABASE_SCHEMA=schema,
        )
        proc = await Proc.start(start_argv(1, plan.concurrency), env, "memory worker")
        peak = 0

        def sample(_: int) -> None:
            nonlocal peak
            peak = max(peak, rss_kib(proc.pid))

        try:
            await asyncio.sleep(3.0)  # started and idle
            idle = rss_kib(proc.pid)
            points: list[dict[str, Any]] = [{"jobs": 0, "rss_kib": idle}]
            done = 0
            for target in (first, total):
                chunk = target - done
                await fill(QUEUE, prefix, chunk, "NoopJob", start=done)  # consumed meanwhile
                await watch_drain(
                    QUEUE,
                    prefix,
                    0,
                    limit=120 + chunk / 50,
                    interval=0.2,
                    alive=proc.alive,
                    on_sample=sample,
                )
                await wait_recorded(QUEUE, prefix, limit=120)
                await asyncio.sleep(1.0)
                done = target
                points.append({"jobs": done, "rss_kib": rss_kib(proc.pid)})
                log(f"  after {done:7} jobs: RSS {points[-1]['rss_kib'] / 1024:.1f} MiB")
            assert not children(proc.pid), "expected a single worker process"
        finally:
            _, err = await proc.stop(grace=30)
        proc.check(err)
    growth = points[-1]["rss_kib"] - points[1]["rss_kib"]
    return {
        "recording": "PostgreSQL",
        "points": points,
        "peak_rss_kib": peak,
        "growth_first_to_last_mib": round(growth / 1024, 2),
        "growth_first_to_last_mb": round(growth * 1024 / 1e6, 2),
        "first": first,
        "total": total,
    }
