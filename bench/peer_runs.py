"""The peers of the throughput section: taskiq (Redis stream broker) and Dramatiq (threads).

They run from their own virtualenv, ``.venv/peers``, which this module creates on demand
from bench/requirements-peers.txt (pinned; reinstalled when that file changes): they are
never dependencies of the project. Each run is a fresh key prefix, ``plan.jobs`` jobs queued
beforehand by the peer's own client (``bench/peers/<peer>_worker.py fill``), then one worker
process at the same concurrency as bullworker's; the clock and the CPU accounting are those
of ``bench.common.watch_drain``, with each peer's own cheap "queue empty" probe in one
pipelined round trip every 20 ms:

- taskiq: ``XINFO GROUPS`` of its stream: ``lag`` (entries not yet delivered to the group)
  and ``pending`` (delivered, not yet acked; taskiq acks after the task ran).
- Dramatiq: ``LLEN`` of the queue and ``HLEN`` of its messages hash (a message leaves the
  hash when it is acked, after it ran).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, Plan, Proc, own_prefix, python_env, redis_client, tree_cpu

PEERS = ("taskiq", "dramatiq")
VENV = ROOT / ".venv" / "peers"
REQUIREMENTS = ROOT / "bench" / "requirements-peers.txt"
_STAMP = VENV / "requirements-peers.txt"  # what the venv was installed from


def peer_python() -> str:
    return str(VENV / "bin" / "python")


def peers_status(log: Any) -> str | None:
    """None if the peers can run, else why not (creating ``.venv/peers`` if needed)."""
    wanted = REQUIREMENTS.read_text()
    if _STAMP.is_file() and _STAMP.read_text() == wanted and os.access(peer_python(), os.X_OK):
        return None
    log("  peers: installing bench/requirements-peers.txt into .venv/peers")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        [peer_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
    ]  # fmt: skip
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            return f"{' '.join(argv[:4])} failed: {done.stderr.strip()[-300:]}"
    _STAMP.write_text(wanted)
    return None


async def _state(client: Any, peer: str, prefix: str) -> tuple[int, int]:
    """(jobs not yet taken, jobs taken but not finished) of the peer's queue."""
    if peer == "taskiq":
        groups = await client.xinfo_groups(f"{prefix}:taskiq")
        group = next(g for g in groups if g["name"] == "bench")
        return int(group["lag"] or 0), int(group["pending"])
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(f"{prefix}:dramatiq:default").hlen(f"{prefix}:dramatiq:default.msgs")
        queued, messages = await pipe.execute()
    return int(queued), int(messages) - int(queued)


async def _redis_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _watch(peer: str, prefix: str, jobs: int, proc: Proc, limit: float) -> dict[str, float]:
    """``watch_drain``'s clock: from the first job taken until none is queued or running."""
    client = redis_client()
    first: float | None = None
    cpu0 = redis0 = 0.0
    deadline = time.monotonic() + limit
    try:
        while True:
            queued, running = await _state(client, peer, prefix)
            now = time.perf_counter()
            if first is None and (running or queued < jobs):
                first = now
                cpu0, redis0 = tree_cpu(proc.pid), await _redis_cpu(client)
            if first is not None and queued == 0 and running == 0:
                return {
                    "seconds": now - first,
                    "cpu": tree_cpu(proc.pid) - cpu0,
                    "redis_cpu": await _redis_cpu(client) - redis0,
                }
            if time.monotonic() > deadline:
                raise TimeoutError(f"{peer}: {queued} queued, {running} running after {limit} s")
            if not proc.alive():
                raise RuntimeError(f"{peer}: the worker process exited before the queue drained")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def one_peer_run(peer: str, workload: str, plan: Plan) -> dict[str, Any]:
    """Drain ``plan.jobs`` jobs with one worker process of ``peer``; its figures."""
    script = str(ROOT / "bench" / "peers" / f"{peer}_worker.py")
    async with own_prefix(peer) as prefix:
        env = python_env(prefix)
        filler = await asyncio.create_subprocess_exec(
            peer_python(), script, "fill", workload, str(plan.jobs),
            env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(filler.communicate(), 60 + plan.jobs / 100)
        if filler.returncode != 0:
            raise RuntimeError(
                f"{peer} fill exited with {filler.returncode}: {err.decode()[-600:]}"
            )
        argv = [peer_python(), script, "work", workload, str(plan.concurrency)]
        proc = await Proc.start(argv, env, f"{peer} worker")
        try:
            drain = await _watch(peer, prefix, plan.jobs, proc, limit=60 + plan.jobs / 50)
        finally:
            _, err = await proc.stop()
        proc.check(err)
    n = plan.jobs
    return {
        "jobs": n,
        "seconds": round(drain["seconds"], 3),
        "jobs_per_s": round(n / drain["seconds"], 1) if drain["seconds"] > 0 else 0.0,
        "worker_cpu_ms_per_job": round(drain["cpu"] * 1000 / n, 3),
        "redis_cpu_ms_per_job": round(drain["redis_cpu"] * 1000 / n, 3),
    }
