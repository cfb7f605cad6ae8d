"""Item 4: the recorder on PostgreSQL, end to end and on its own.

End to end: ``bullworker start --processes 2`` (recording on, the leader of the
two records) drains a queue filled up front, flat out. The finished set is
sampled every 50 ms (its largest size shows whether the recorder keeps up), and
afterwards ``_jobs`` gives the lag from ``completedAt`` (BullMQ's
``finishedOn``) to ``recordedAt`` (``now()`` of the inserting transaction).

On its own: ``plan.backlog`` jobs are finished by two raw bullmq workers (no
recording), then ``Recorder.record_batch()`` runs in this process, batch after
batch with the default batch size and no keep window (each job removed as soon
as it is recorded), until both finished sets are empty. ``keep_window``
(bench/keep_window.py) measures what the default keep window costs.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import (
    DATABASE_URL,
    REDIS_URL,
    Plan,
    Proc,
    fill,
    own_prefix,
    own_schema,
    python,
    python_env,
    redis_client,
    tree_cpu,
    watch_drain,
)
from bench.scaling import QUEUE, start_argv, wait_recorded

LAG_SQL = """
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY lag),
       max(lag)
FROM (SELECT extract(epoch FROM ("recordedAt" - "completedAt"))::float8 AS lag
      FROM "{schema}"."_jobs") AS lags
"""


async def _lags(schema: str) -> dict[str, Any]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        cur = await conn.execute(LAG_SQL.format(schema=schema))
        row = await cur.fetchone()
    assert row is not None
    count, (p50, p90, p99), worst = row
    return {
        "rows": count,
        "lag_p50_s": round(p50, 3),
        "lag_p90_s": round(p90, 3),
        "lag_p99_s": round(p99, 3),
        "lag_max_s": round(worst, 3),
    }


async def end_to_end(plan: Plan, log: Any) -> dict[str, Any]:
    n = plan.e2e_jobs
    async with own_schema("e2e") as schema, own_prefix("e2e") as prefix:
        await fill(QUEUE, prefix, n, "NoopJob")
        env = python_env(
            prefix,
            BULL_QUEUE=QUEUE,
            RECORD_JOBS="true",
            DATABASE_URL=DATABASE_URL,
            DATABASE_SCHEMA=schema,
            # No keep window, so that the finished set holds only what waits to be recorded
            # (bench/keep_window.py measures the window).
            KEEP_COMPLETED="0",
            KEEP_FAILED="0",
        )
        proc = await Proc.start(start_argv(2, plan.concurrency), env, "e2e workers")
        sizes: list[int] = []
        try:
            drain = await watch_drain(
                QUEUE,
                prefix,
                n,
                limit=120 + n / 50,
                interval=0.05,
                alive=proc.alive,
                on_sample=sizes.append,
                cpu=lambda: tree_cpu(proc.pid),
            )
            settle = await wait_recorded(QUEUE, prefix, limit=120)
        finally:
            _, err = await proc.stop(grace=30)
        proc.check(err)
        lags = await _lags(schema)
    result = {
        "jobs": n,
        "jobs_per_s": round(drain.rate, 1),
        "finished_set_max": max(sizes) if sizes else 0,
        "finished_set_samples": len(sizes),
        "left_at_drain": drain.finished_left,
        "recorded_all_after_drain_s": round(settle, 2),
        **lags,
    }
    log(
        f"  2 processes: {result['jobs_per_s']:.0f} jobs/s, finished set max {result['finished_set_max']},"
        f" lag p50 {lags['lag_p50_s']} s p99 {lags['lag_p99_s']} s max {lags['lag_max_s']} s"
    )
    return result


async def _make_backlog(prefix: str, n: int, concurrency: int) -> float:
    """Finish ``n`` jobs with two raw bullmq workers (nothing records); seconds taken."""
    await fill(QUEUE, prefix, n, "NoopJob")
    env = python_env(prefix)
    argv = [python(), "-m", "bench.worker_proc", "raw", "noop", QUEUE, str(concurrency)]
    procs = [await Proc.start(argv, env, f"raw worker {i}") for i in (1, 2)]
    try:
        drain = await watch_drain(
            QUEUE, prefix, n, limit=120 + n / 50, alive=lambda: all(p.alive() for p in procs)
        )
    finally:
        for proc in procs:
            _, err = await proc.stop()
            proc.check(err)
    return drain.seconds


async def recorder_alone(plan: Plan, log: Any) -> dict[str, Any]:
    from bullworker.config.settings import AppConfig
    from bullworker.core.keep import KeepWindow
    from bullworker.history.recorder import Recorder
    from bullworker.history.store import open_store
    from bullworker.transport.connection import redis_client as bw_client

    n = plan.backlog
    async with own_schema("rec") as schema, own_prefix("rec") as prefix:
        made = await _make_backlog(prefix, n, plan.concurrency)
        log(f"  backlog of {n} finished jobs made in {made:.1f} s")
        settings = AppConfig(environ={}, redis_url=REDIS_URL).redis_settings("bull")
        client = bw_client(settings)
        store = open_store(DATABASE_URL, pg_schema=schema)
        await store.open()
        try:
            recorder = Recorder(
                queue=QUEUE,
                prefix=prefix,
                redis=client,
                events_redis=lambda: bw_client(settings),
                store=_ready(store),
                batch_size=AppConfig(environ={}).recorder_batch_size,
                keep=KeepWindow(0, 0, 0.0),  # removed at once, as before the keep window
            )
            began, cpu = time.perf_counter(), time.process_time()
            while await recorder.record_batch() or recorder.more:
                pass
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            left = await _finished_left(prefix)
            rows = await store.count(queue=QUEUE)
        finally:
            await store.close()
            await client.aclose()
    result = {
        "backlog": n,
        "batch_size": recorder.batch_size,
        "seconds": round(seconds, 3),
        "rows": rows,
        "rows_per_s": round(rows / seconds, 1) if seconds else 0.0,
        "recorder_cpu_us_per_row": round(cpu * 1e6 / max(rows, 1), 1),
        "left_in_redis": left,
    }
    log(
        f"  recorder alone: {rows} rows in {seconds:.2f} s = {result['rows_per_s']:.0f} rows/s"
        f" ({result['recorder_cpu_us_per_row']:.0f} us CPU/row in the recorder)"
    )
    return result


def _ready(store: Any) -> Any:
    async def get() -> Any:
        return store

    return get


async def _finished_left(prefix: str) -> int:
    client = redis_client()
    try:
        base = f"{prefix}:{QUEUE}:"
        return int(await client.zcard(base + "completed")) + int(
            await client.zcard(base + "failed")
        )
    finally:
        await client.aclose()


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    from bench import keep_window

    return {
        "end_to_end": await end_to_end(plan, log),
        "recorder_alone": await recorder_alone(plan, log),
        "keep_window": await keep_window.run(plan, log),
    }
