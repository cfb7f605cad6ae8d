"""The soak's two producers: Python (``WorkerService.queue_jobs``) and Node (``addBulk``).

Each adds its share in chunks while fewer than ``max_waiting`` jobs wait, so
that the jobs are produced while the workers run them, not queued beforehand.
A chunk that fails (Redis is restarting) is added again after a pause; every
retry is kept with its time, because a chunk whose reply was lost may have been
added anyway and then exists twice (with two ids) in the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import ROOT
from bullworker import AppConfig, WorkerService
from bullworker.core import keys


@dataclass
class Produced:
    """What one producer was told: job id -> sequence number, and its retries."""

    name: str
    size: int
    ids: dict[str, int] = field(default_factory=dict)
    retries: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


async def _waiting(client: aioredis.Redis, prefix: str, queue: str) -> int:
    return int(await client.llen(keys.queue_key(prefix, queue, "wait")))


async def produce_python(
    redis_url: str, prefix: str, queue: str, size: int, *, chunk: int, max_waiting: int
) -> Produced:
    """Queue ``size`` SoakJobs ``{"p": "py", "i": k}`` with ``queue_jobs``, ``chunk`` at a time."""
    from bench.soak_app import SoakJob, make_app

    config = AppConfig(environ={}, redis_url=redis_url, bull_prefix=prefix, bull_queue=queue)
    app = make_app(config)
    service = app.resolve(WorkerService)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
    done = Produced("py", size)
    began = time.perf_counter()
    first = 0
    try:
        while first < size:
            last = min(first + chunk, size)
            stage = "count"
            try:
                if await _waiting(client, prefix, queue) >= max_waiting:
                    await asyncio.sleep(0.05)
                    continue
                stage = "add"
                items = [{"p": "py", "i": k} for k in range(first, last)]
                handles = await service.queue_jobs(SoakJob, items)
            except Exception as exc:  # Redis restarting: try the chunk again
                done.retries.append(
                    {"at": time.time(), "first": first, "stage": stage, "error": repr(exc)[:200]}
                )
                await asyncio.sleep(0.5)
                continue
            done.ids.update(zip((str(h) for h in handles), range(first, last), strict=True))
            first = last
    finally:
        done.seconds = time.perf_counter() - began
        await client.aclose()
        await app.stop()
    return done


class NodeProducer:
    """``bench/node/soak_produce.mjs`` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, ids_file: Path, size: int) -> None:
        self.proc = proc
        self.ids_file = ids_file
        self.size = size
        self.began = time.perf_counter()

    @classmethod
    async def start(
        cls, redis_url: str, prefix: str, queue: str, size: int, workdir: Path, **limits: int
    ) -> NodeProducer:
        ids_file = workdir / "node-ids.txt"
        env = {**os.environ, "REDIS_URL": redis_url, "BULL_PREFIX": prefix, "BULL_QUEUE": queue}
        argv = [
            "node", str(ROOT / "bench" / "node" / "soak_produce.mjs"), str(size),
            str(limits["chunk"]), str(limits["max_waiting"]), str(ids_file),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        return cls(proc, ids_file, size)

    async def wait(self) -> Produced:
        out, err = await self.proc.communicate()
        if self.proc.returncode != 0:
            raise RuntimeError(
                f"the Node producer exited with {self.proc.returncode}: {err[-2000:]!r}"
            )
        summary = json.loads(out.decode().strip().splitlines()[-1])
        done = Produced("node", self.size, retries=summary["retries"])
        done.seconds = time.perf_counter() - self.began
        if self.ids_file.exists():
            for line in self.ids_file.read_text().splitlines():
                job_id, seq = line.split()
                done.ids[job_id] = int(seq)
        return done

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
