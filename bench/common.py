"""What every benchmark section shares: servers, key prefixes, filling and watching queues.

Nothing here starts a server: the suite uses the Redis and PostgreSQL it is
pointed at (``BULLWORKER_BENCH_REDIS_URL`` / ``BULLWORKER_BENCH_DATABASE_URL``,
falling back to the test variables, then to the local defaults). Every run
uses its own key prefix and PostgreSQL schema and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bullworker.config.settings import AppConfig
from bullworker.transport.connection import bullmq_connection

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _env(name: str, test_name: str, default: str) -> str:
    return os.environ.get(name) or os.environ.get(test_name) or default


REDIS_URL = _env(
    "BULLWORKER_BENCH_REDIS_URL", "BULLWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"
)
DATABASE_URL = _env(
    "BULLWORKER_BENCH_DATABASE_URL",
    "BULLWORKER_TEST_DATABASE_URL",
    "postgresql://postgres@127.0.0.1:5432/test",
)
#: ``BULLWORKER_BENCH_REDIS_CLUSTER=true``: the bench Redis URL is a seed node of a Redis
#: Cluster; prefixes get a hash tag, Node and the peers (one-node clients) are left out.
CLUSTER = os.environ.get("BULLWORKER_BENCH_REDIS_CLUSTER", "").lower() in ("1", "true", "yes")


@dataclass
class Plan:
    """Sizes of one benchmark run (full or ``--smoke``)."""

    smoke: bool
    jobs: int  # jobs per throughput run
    repeats: int
    concurrency: int = 10
    enqueue_jobs: int = 20_000
    backlog: int = 50_000  # finished jobs the recorder drains on its own
    e2e_jobs: int = 30_000
    memory_first: int = 10_000
    memory_total: int = 100_000
    cold_repeats: int = 7
    notes: list[str] = field(default_factory=list)

    @classmethod
    def full(cls) -> Plan:
        return cls(smoke=False, jobs=20_000, repeats=3)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            smoke=True,
            jobs=400,
            repeats=1,
            enqueue_jobs=400,
            backlog=600,
            e2e_jobs=600,
            memory_first=200,
            memory_total=600,
            cold_repeats=2,
        )


def unique_prefix(tag: str) -> str:
    prefix = f"bwbench-{tag}-{uuid.uuid4().hex[:8]}"
    return "{" + prefix + "}" if CLUSTER else prefix  # a queue's keys in one slot


def redis_client() -> aioredis.Redis:
    if CLUSTER:  # the commands used here are those of a plain client
        return cast(aioredis.Redis, RedisCluster.from_url(REDIS_URL, decode_responses=True))
    return aioredis.Redis.from_url(REDIS_URL, decode_responses=True)


def bull_connection() -> Any:
    """bullmq ``connection`` for the bench Redis (kwargs without socket timeout, or a
    cluster client)."""
    config = AppConfig(environ={}, redis_url=REDIS_URL, redis_cluster=CLUSTER, bull_prefix="{b}")
    return bullmq_connection(config.redis_settings("bull"))


async def delete_prefix(prefix: str) -> int:
    """Delete every key under ``prefix:``; returns how many."""
    client = redis_client()
    deleted = 0
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 2000:
                deleted += await client.unlink(*batch)
                batch = []
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


@contextlib.asynccontextmanager
async def own_prefix(tag: str) -> AsyncIterator[str]:
    prefix = unique_prefix(tag)
    try:
        yield prefix
    finally:
        await delete_prefix(prefix)


@contextlib.asynccontextmanager
async def own_schema(tag: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema, dropped (with ``_jobs``) afterwards."""
    import psycopg

    schema = f"bwbench_{tag}_{uuid.uuid4().hex[:8]}"
    try:
        yield schema
    finally:
        async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def fill(
    queue: str, prefix: str, n: int, name: str, start: int = 0, chunk: int = 5000
) -> float:
    """Queue ``n`` jobs ``{"i": k}`` with raw ``addBulk``; returns seconds taken."""
    from bullmq import Queue

    q = Queue(queue, {"prefix": prefix, "connection": bull_connection()})
    began = time.perf_counter()
    try:
        for first in range(start, start + n, chunk):
            last = min(first + chunk, start + n)
            await q.addBulk([{"name": name, "data": {"i": i}} for i in range(first, last)])
    finally:
        await q.close()
    return time.perf_counter() - began


@dataclass
class Drain:
    """How a queue drained, seen from outside the workers."""

    jobs: int
    seconds: float  # first job taken -> wait and active both empty
    max_finished: int  # largest ZCARD(completed) + ZCARD(failed) sampled
    samples: int
    cpu: float = 0.0  # CPU seconds of the watched processes while draining
    redis_cpu: float = 0.0  # CPU seconds of the Redis server meanwhile (shared: approximate)
    finished_left: int = 0  # ZCARD(completed) + ZCARD(failed) when the queue drained

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


async def watch_drain(
    queue: str,
    prefix: str,
    jobs: int,
    *,
    limit: float,
    interval: float = 0.02,
    alive: Callable[[], bool] = lambda: True,
    on_sample: Callable[[int], None] | None = None,
    cpu: Callable[[], float] = lambda: 0.0,
) -> Drain:
    """Poll the queue until its ``jobs`` are all taken and none is active.

    One pipelined round trip per ``interval``; the clock starts at the first
    sample that shows a job taken and stops at the first that shows the wait
    and active lists empty.
    """
    client = redis_client()
    base = f"{prefix}:{queue}:"
    first: float | None = None
    max_finished = samples = 0
    cpu0 = redis0 = 0.0
    deadline = time.monotonic() + limit
    try:
        while True:
            async with client.pipeline(transaction=False) as pipe:
                pipe.llen(base + "wait").llen(base + "active")
                pipe.zcard(base + "completed").zcard(base + "failed")
                waiting, active, completed, failed = await pipe.execute()
            now = time.perf_counter()
            samples += 1
            max_finished = max(max_finished, completed + failed)
            if on_sample is not None:
                on_sample(completed + failed)
            if first is None and (active or waiting < jobs or jobs <= 0):
                first = now
                cpu0, redis0 = cpu(), await _redis_cpu(client)
            if first is not None and waiting == 0 and active == 0:
                return Drain(
                    jobs,
                    now - first,
                    max_finished,
                    samples,
                    cpu=cpu() - cpu0,
                    redis_cpu=await _redis_cpu(client) - redis0,
                    finished_left=completed + failed,
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{queue}: {waiting} waiting, {active} active after {limit} s")
            if not alive():
                raise RuntimeError(f"{queue}: the worker process exited before the queue drained")
            await asyncio.sleep(interval)
    finally:
        await client.aclose()


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a supervisor's workers)."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _redis_cpu(client: aioredis.Redis) -> float:
    if CLUSTER:  # every node's, masters and replicas, summed
        found = await client.info("cpu", target_nodes=RedisCluster.ALL_NODES)  # type: ignore[call-arg]
        nodes = list(found.values())
    else:
        nodes = [await client.info("cpu")]
    return sum(float(n["used_cpu_user"]) + float(n["used_cpu_sys"]) for n in nodes)


def python_env(prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a Python worker process of the suite."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BULL_", "REDIS_", "DATABASE_", "RECORD", "WORKER_", "BULLWORKER_APP"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        REDIS_URL=REDIS_URL,
        BULL_PREFIX=prefix,
        APP_ENV="production",
        SHUTDOWN_GRACE="5",
    )
    if CLUSTER:
        env.update(REDIS_CLUSTER="true")
    env.update(extra)
    return env


class Proc:
    """A child process of the suite, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, proc: asyncio.subprocess.Process, what: str) -> None:
        self.proc = proc
        self.what = what

    @classmethod
    async def start(cls, argv: Sequence[str], env: dict[str, str], what: str) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, what)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def stop(self, grace: float = 20.0) -> tuple[str, str]:
        """SIGTERM, wait, collect output; SIGKILL if it does not stop in time."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            out, err = await self.proc.communicate()
        return out.decode(errors="replace"), err.decode(errors="replace")

    def check(self, stderr: str) -> None:
        if self.proc.returncode not in (0, -signal.SIGTERM):
            tail = "\n".join(stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{tail}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def python() -> str:
    return sys.executable
