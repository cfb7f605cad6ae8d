"""Item 16.2: how soon a queued job starts, in an idle runner and right after "ready".

Latency is the wall clock taken in the handler as it starts (``time.time()``,
returned by the job and read from the ``completed`` event of the queue's events
stream) minus ``time.time()`` just before the job was queued. Producer and
worker are on this machine, so both read the same clock.

- idle: one worker process started, ready, then left idle for 2 s; then jobs
  queued one at a time with a pause between them (the worker is idle again when
  each one comes).
- first job: a fresh worker process started again and again; as soon as it says
  it is ready, one job is queued. "Ready" for ``bullworker start`` is what a user
  or an orchestrator sees: its ``runner started:`` log line, or ``/readyz``
  answering 200 (``--metrics-port``, polled every 5 ms). The raw bullmq worker
  and Node BullMQ, the baselines, print ``ready`` once their worker is created
  and running (Node: after ``waitUntilReady()``).

bullworker runs as ``bullworker start --app bench.pickup_app:app`` with recording
off, so the figures are the pickup path alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.common import (
    REDIS_URL,
    ROOT,
    Plan,
    bull_connection,
    own_prefix,
    python,
    python_env,
    redis_client,
)
from bench.throughput import node_status

QUEUE = "pickup"
IDLE_BEFORE = 2.0  # seconds a started worker stays idle before the first job
PAUSE = 0.05  # between two jobs into the idle worker
READY_LIMIT = 60.0  # seconds a worker may take to say it is ready

Send = Callable[[int], Awaitable[str]]


@dataclass
class Subject:
    """One system under test: how to start its worker and how to queue its job."""

    name: str
    argv: list[str]
    ready: str  # "log": the runner's start line on stderr; "stdout": a "ready" line; "readyz"
    extra_env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def subjects(node: bool) -> list[Subject]:
    start = [python(), "-m", "bullworker", "start", "--app", "bench.pickup_app:app",
             "--concurrency", "10", "--log-level", "INFO"]  # fmt: skip
    env = {"BULL_QUEUE": QUEUE, "RECORD_JOBS": "false"}
    out = [
        Subject("bullworker", start, "log", env),
        Subject("raw bullmq", [python(), "-m", "bench.worker_proc", "raw", "stamp", QUEUE, "10"],
                "stdout", {}),
    ]  # fmt: skip
    if node:
        argv = ["node", "bench/node/pickup_worker.mjs", QUEUE, "10"]
        out.append(Subject("node", argv, "stdout", {}))
    return out


class Worker:
    """A worker process whose output is read (for its ready line) and kept."""

    def __init__(self, proc: asyncio.subprocess.Process, what: str) -> None:
        self.proc = proc
        self.what = what
        self.lines: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self.seen = asyncio.Event()
        self.marker = ""

    @classmethod
    async def start(cls, subject: Subject, prefix: str, port: int | None) -> Worker:
        argv = list(subject.argv)
        if port is not None:
            argv += ["--metrics-port", str(port)]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=python_env(prefix, **subject.extra_env),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = cls(proc, subject.name)
        worker.marker = "runner started:" if subject.ready == "log" else "ready"
        assert proc.stdout is not None and proc.stderr is not None
        worker._readers = [asyncio.create_task(worker._read(s)) for s in (proc.stdout, proc.stderr)]
        return worker

    async def _read(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if self.marker and self.marker in line:
                self.seen.set()

    async def wait_ready(self, how: str, port: int | None) -> None:
        deadline = time.monotonic() + READY_LIMIT
        if how == "readyz":
            await self._poll_readyz(port, deadline)
            return
        while not self.seen.is_set():
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.what} exited before ready:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.what} not ready after {READY_LIMIT:g} s:\n{self.tail()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.seen.wait(), 0.5)

    async def _poll_readyz(self, port: int | None, deadline: float) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/readyz")).status_code == 200:
                        return
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.what} exited before ready:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.what}: /readyz not 200 after {READY_LIMIT:g} s")
                await asyncio.sleep(0.005)

    def tail(self) -> str:
        return "\n".join(self.lines[-15:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{self.what} exited with {self.proc.returncode}:\n{self.tail()}")


class Stamps:
    """The handler-start stamps of finished jobs, from the queue's events stream."""

    def __init__(self, prefix: str) -> None:
        self.key = f"{prefix}:{QUEUE}:events"
        self.client = redis_client()
        self.after = "-"
        self.stamps: dict[str, float] = {}

    async def read(self) -> None:
        entries = await self.client.xrange(self.key, min=self.after)
        for entry_id, fields in entries:
            if fields.get("event") == "completed":
                self.stamps[fields["jobId"]] = float(json.loads(fields["returnvalue"]))
            self.after = "(" + entry_id
        return None

    async def of(self, job_id: str, limit: float = 10.0) -> float:
        """The stamp of ``job_id``, waiting up to ``limit`` s for the job to finish."""
        deadline = time.monotonic() + limit
        while job_id not in self.stamps:
            await self.read()
            if job_id in self.stamps:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not finish within {limit:g} s")
            await asyncio.sleep(0.002)
        return self.stamps.pop(job_id)

    async def close(self) -> None:
        await self.client.aclose()


@contextlib.asynccontextmanager
async def sender(subject: Subject, prefix: str) -> Any:
    """Queue one job the way this subject's users do: ``queue_job``, or bullmq's ``add``."""
    if subject.name == "bullworker":
        from bench.pickup_app import StampJob, registry
        from bullworker import AppConfig, create_app

        config = AppConfig(
            environ={}, redis_url=REDIS_URL, bull_prefix=prefix, bull_queue=QUEUE,
            app_env="production",
        )  # fmt: skip
        app = create_app(config=config, registry=registry)

        async def send_ours(i: int) -> str:
            return str(await app.worker_service.queue_job(StampJob, {"i": i}))

        try:
            yield send_ours
        finally:
            await app.stop()
        return
    from bullmq import Queue

    queue = Queue(QUEUE, {"prefix": prefix, "connection": bull_connection()})

    async def send_raw(i: int) -> str:
        return str((await queue.add("StampJob", {"i": i}, {})).id)

    try:
        yield send_raw
    finally:
        await queue.close()


async def _warm(send: Send, stamps: Stamps) -> None:
    """Connect the producer before the clock matters (its first call opens connections)."""
    await stamps.of(await send(-1), limit=30)


async def _unqueue(prefix: str, job_id: str) -> None:
    from bullmq import Queue

    queue = Queue(QUEUE, {"prefix": prefix, "connection": bull_connection()})
    try:
        await queue.remove(job_id)
    finally:
        await queue.close()
    client = redis_client()
    try:
        await client.delete(f"{prefix}:{QUEUE}:marker")
        left = await client.llen(f"{prefix}:{QUEUE}:wait")
    finally:
        await client.aclose()
    if left:
        raise RuntimeError(f"{left} job(s) still waiting before the worker starts")


async def idle(subject: Subject, n: int) -> list[float]:
    """Latencies (s) of ``n`` jobs queued one by one into an idle worker."""
    latencies = []
    async with own_prefix("pickup-idle") as prefix, sender(subject, prefix) as send:
        stamps = Stamps(prefix)
        worker = await Worker.start(subject, prefix, None)
        try:
            await worker.wait_ready(subject.ready, None)
            await _warm(send, stamps)
            await asyncio.sleep(IDLE_BEFORE)
            for i in range(n):
                before = time.time()
                job_id = await send(i)
                await asyncio.sleep(PAUSE)
                latencies.append(await stamps.of(job_id) - before)
        finally:
            await stamps.close()
            await worker.stop()
    return latencies


async def first_job(subject: Subject, how: str) -> float:
    """The latency of one job queued as soon as a fresh worker process is ready."""
    async with own_prefix("pickup-first") as prefix, sender(subject, prefix) as send:
        stamps = Stamps(prefix)
        await stamps.read()
        port = _free_port() if how == "readyz" else None
        # The producer connects before the worker starts (the clock is the worker's only);
        # the job it queued for that is taken out again, marker and all.
        await _unqueue(prefix, await send(-1))
        await stamps.client.ping()
        worker = await Worker.start(subject, prefix, port)
        try:
            await worker.wait_ready(how, port)
            before = time.time()
            job_id = await send(0)
            return await stamps.of(job_id) - before
        finally:
            await stamps.close()
            await worker.stop()


def _summary(latencies: list[float]) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 2),
        "min_ms": round(ms[0], 2),
        "max_ms": round(ms[-1], 2),
    }


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    idle_jobs, starts = (10, 2) if plan.smoke else (200, 20)
    node_problem = node_status()
    result: dict[str, Any] = {
        "idle_jobs": idle_jobs,
        "pause_s": PAUSE,
        "starts": starts,
        "node": node_problem or "ran",
        "idle": {},
        "first_job": {},
    }
    chosen = subjects(node_problem is None)
    for subject in chosen:
        figures = _summary(await idle(subject, idle_jobs))
        result["idle"][subject.name] = figures
        log(
            f"  idle  {subject.name:22} median {figures['median_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms"
        )
    ways = [(s, s.ready) for s in chosen]
    ways.insert(1, (chosen[0], "readyz"))  # bullworker, ready by /readyz
    first: dict[str, list[float]] = {}
    for _ in range(starts):  # interleaved: every way once per round
        for subject, how in ways:
            label = subject.name + (" (/readyz)" if how == "readyz" else "")
            first.setdefault(label, []).append(await first_job(subject, how))
    for label, values in first.items():
        figures = _summary(values)
        result["first_job"][label] = figures
        log(
            f"  first {label:22} median {figures['median_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms"
        )
    return result
