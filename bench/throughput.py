"""Items 1 and 2: bullworker's Runner against a raw ``bullmq.Worker`` and Node BullMQ.

Every run: a fresh key prefix, ``plan.jobs`` jobs queued with ``addBulk``, then
one worker process started; the queue is watched from outside (one pipelined
round trip every 20 ms) and the clock runs from the first job taken until the
wait and active lists are both empty. The variants run interleaved, repeat
after repeat, so they share the machine's noise; the figures are medians.

The peers (taskiq, Dramatiq; bench/peer_runs.py) run in the same rotation, from
their own virtualenv, with the same clock on their own queue structures. The
recording variant records to a PostgreSQL schema of its own in each run.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from bench import peer_runs
from bench.common import (
    CLUSTER,
    DATABASE_URL,
    ROOT,
    Plan,
    Proc,
    median,
    own_prefix,
    own_schema,
    python,
    python_env,
    tree_cpu,
    watch_drain,
)

QUEUE = "bench"
JOB_NAMES = {"noop": "NoopJob", "sleep": "SleepJob"}
WORKLOADS = ("noop", "sleep")
#: (label, kind, recording)
PYTHON_VARIANTS = (
    ("raw", "raw", False),
    ("bullworker", "bullworker", False),
    ("bullworker+rec", "bullworker", True),
    # The same runner on asyncio's own loop (EVENT_LOOP=asyncio): what uvloop brings.
    ("bullworker/asyncio", "bullworker-asyncio", False),
)
NODE_DIR = ROOT / "tests" / "node"


def node_status() -> str | None:
    """None if the Node worker can run, else why not (installing it if needed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return "node not found"
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        if npm is None:
            return "npm not found to install tests/node"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            return f"npm ci in tests/node failed: {done.stderr.strip()[-300:]}"
    return None


async def one_run(
    label: str,
    kind: str,
    workload: str,
    plan: Plan,
    *,
    record: bool,
    schema: str | None,
    processes: int = 1,
) -> dict[str, Any]:
    """Drain ``plan.jobs`` jobs with ``processes`` worker processes; their figures."""
    from bench.common import fill

    if kind in peer_runs.PEERS:
        return await peer_runs.one_peer_run(kind, workload, plan)
    if record and schema is None:  # a schema of its own for this measurement
        async with own_schema("tput") as own:
            return await one_run(label, kind, workload, plan, record=True, schema=own)
    async with own_prefix(label.replace("+", "-").replace("/", "-")) as prefix:
        await fill(QUEUE, prefix, plan.jobs, JOB_NAMES[workload])
        conc = str(plan.concurrency)
        if kind == "node":
            argv = [shutil.which("node") or "node", "bench/node/worker.mjs", workload, QUEUE, conc]
        else:
            runs_as = kind.removesuffix("-asyncio")
            argv = [python(), "-m", "bench.worker_proc", runs_as, workload, QUEUE, conc]
        extra = {"BULL_QUEUE": QUEUE, "RECORD_JOBS": "true" if record else "false"}
        extra["EVENT_LOOP"] = "asyncio" if kind.endswith("-asyncio") else "auto"
        if record and schema:
            extra.update(DATABASE_URL=DATABASE_URL, DATABASE_SCHEMA=schema)
        env = python_env(prefix, **extra)
        procs = [await Proc.start(argv, env, f"{label} worker") for _ in range(processes)]
        try:
            drain = await watch_drain(
                QUEUE,
                prefix,
                plan.jobs,
                limit=60 + plan.jobs / 50,
                alive=lambda: all(p.alive() for p in procs),
                cpu=lambda: sum(tree_cpu(p.pid) for p in procs),
            )
        finally:
            errors = [(p, (await p.stop())[1]) for p in procs]
        for proc, err in errors:
            proc.check(err)
    return {
        "jobs": drain.jobs,
        "seconds": round(drain.seconds, 3),
        "jobs_per_s": round(drain.rate, 1),
        "worker_cpu_ms_per_job": round(drain.cpu * 1000 / drain.jobs, 3),
        "redis_cpu_ms_per_job": round(drain.redis_cpu * 1000 / drain.jobs, 3),
        "finished_left_in_redis": drain.finished_left,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "jobs_per_s": round(median([r["jobs_per_s"] for r in runs]), 1),
        "worker_cpu_ms_per_job": round(median([r["worker_cpu_ms_per_job"] for r in runs]), 3),
        "redis_cpu_ms_per_job": round(median([r["redis_cpu_ms_per_job"] for r in runs]), 3),
        "runs": runs,
    }


def _paired(runs: dict[str, list[dict[str, Any]]], top: str, bottom: str) -> dict[str, Any]:
    """The median of the per-repeat ratios (each pair ran back to back), and those ratios."""
    each = [
        round(a["jobs_per_s"] / b["jobs_per_s"], 3)
        for a, b in zip(runs[top], runs[bottom], strict=True)
        if b["jobs_per_s"]
    ]
    return {"ratio": round(median(each), 3), "per_repeat": each}


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    one_node = "a Redis Cluster run: its client talks to one node" if CLUSTER else None
    node_problem = one_node or node_status()
    if node_problem:
        log(f"  node: skipped ({node_problem})")
    peers_problem = one_node or peer_runs.peers_status(log)
    if peers_problem:
        log(f"  peers: skipped ({peers_problem})")
    result: dict[str, Any] = {
        "jobs_per_run": plan.jobs,
        "repeats": plan.repeats,
        "concurrency": plan.concurrency,
        "node": node_problem or "ran",
        "peers": peers_problem or "ran",
        "workloads": {},
    }
    for workload in WORKLOADS:
        runs: dict[str, list[dict[str, Any]]] = {}
        variants: list[tuple[str, str, bool]] = list(PYTHON_VARIANTS)
        if node_problem is None:
            variants.append(("node", "node", False))
        if peers_problem is None:
            variants += [(peer, peer, False) for peer in peer_runs.PEERS]
        for repeat in range(plan.repeats):
            for label, kind, record in variants:
                figures = await one_run(label, kind, workload, plan, record=record, schema=None)
                runs.setdefault(label, []).append(figures)
                log(
                    f"  {workload:5} #{repeat + 1} {label:18} {figures['jobs_per_s']:8.0f} jobs/s"
                    f"  cpu {figures['worker_cpu_ms_per_job']:.3f} ms/job"
                )
        summary: dict[str, Any] = {label: _summary(r) for label, r in runs.items()}
        summary["ratios"] = _ratios(runs)
        result["workloads"][workload] = summary
    return result


def _ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Paired ratios; ``bullworker+rec/fastest peer`` against the peer fastest by median."""
    ratios = {
        "bullworker/raw": _paired(runs, "bullworker", "raw"),
        "bullworker+rec/raw": _paired(runs, "bullworker+rec", "raw"),
    }
    if "node" in runs:
        ratios["bullworker/node"] = _paired(runs, "bullworker", "node")
        ratios["bullworker+rec/node"] = _paired(runs, "bullworker+rec", "node")
        ratios["raw/node"] = _paired(runs, "raw", "node")
    if "bullworker/asyncio" in runs:
        ratios["uvloop/asyncio"] = _paired(runs, "bullworker", "bullworker/asyncio")
    peers = [p for p in peer_runs.PEERS if p in runs]
    for peer in peers:
        ratios[f"bullworker/{peer}"] = _paired(runs, "bullworker", peer)
        ratios[f"bullworker+rec/{peer}"] = _paired(runs, "bullworker+rec", peer)
    if peers:
        fastest = max(peers, key=lambda p: median([r["jobs_per_s"] for r in runs[p]]))
        ratios["bullworker+rec/fastest peer"] = {
            **ratios[f"bullworker+rec/{fastest}"],
            "peer": fastest,
        }
    return ratios
