"""A soak run with faults: many jobs through two runner processes while Redis, the recording
leader and PostgreSQL are knocked down, then a check that every job is in ``_jobs`` exactly once.

    .venv/bin/python -m bench.soak                 # 1,000,000 jobs (10-20 minutes)
    .venv/bin/python -m bench.soak --smoke         # 20,000 jobs
    .venv/bin/python -m bench.soak --jobs 2000 --lock-ms 5000 --out DIR

It starts its own servers (bench/soak_servers.py), so that restarting them
disturbs nobody: a redis-server with AOF and a PostgreSQL cluster, both deleted
at the end, also on failure. ``bullworker start --app bench.soak_app:app
--processes 2`` consumes the queue and records to that PostgreSQL (one of the
two processes is the elected recorder); half of the jobs are queued from Python
(``queue_jobs``), half from Node (``addBulk``), while the workers run them.
After a quarter, a half and three quarters of the jobs have run, it crashes
Redis (SIGKILL, restarted on its AOF), SIGKILLs the process holding the recorder
lease (the supervisor starts a new one) and restarts PostgreSQL (``pg_ctl
restart -m fast``). ``--lock-ms`` sets the workers' lock duration and stalled
interval (default: bullworker's 30 s), which bound how long a job held by a
killed process waits before it runs again.

It writes ``soak.json``, ``soak.md`` (the fragment of :func:`render`) and the
runner's log to ``--out`` (default ``bench/results``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import ROOT, children, python, rss_kib
from bench.soak_check import Fault, check_rows, explain_reruns, read_runs, render
from bench.soak_produce import NodeProducer, Produced, produce_python
from bench.soak_servers import Servers
from bench.soak_state import Progress, leader_pid, read_rows, recording_lag
from bullworker.core import keys
from bullworker.history.backlog import recording_backlog

__all__ = ["main", "render", "soak"]

QUEUE = "soak"
PREFIX = "soak"
CHUNK = 1000
MAX_WAITING = 20_000
#: Each fault, at the fraction of the jobs run when it strikes.
FAULTS = (("redis-restart", 0.25), ("sigkill-leader", 0.5), ("pg-restart", 0.75))
SMOKE_JOBS = 20_000
#: Seconds without any job run or recorded after which a soak that is not done has hung.
STUCK_S = 120.0


def _runner_env(servers: Servers, lock_ms: int) -> dict[str, str]:
    drop = ("BULL_", "REDIS_", "DATABASE_", "RECORD", "WORKER_", "BULLWORKER_", "KEEP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        APP_ENV="production",
        REDIS_URL=servers.redis.url,
        BULL_PREFIX=PREFIX,
        BULL_QUEUE=QUEUE,
        RECORD_JOBS="true",
        DATABASE_URL=servers.pg.url,
        SOAK_RUNS_DIR=str(servers.runs),
        WORKER_LOCK_DURATION=str(lock_ms),
        WORKER_STALLED_INTERVAL=str(lock_ms),
        SHUTDOWN_GRACE="10",
        LOG_LEVEL="INFO",
    )
    return env


class Soak:
    """One soak run: its servers, its runner, what it samples and the faults it makes."""

    def __init__(self, servers: Servers, jobs: int, lock_ms: int, log: Callable[[str], None]):
        self.servers = servers
        self.jobs = jobs
        self.lock_ms = lock_ms
        self.log = log
        self.progress = Progress(servers.runs)
        self.faults: list[Fault] = []
        self.workers: dict[int, dict[str, Any]] = {}  # pid -> slot and VmRSS points
        self.backlog_max = 0
        self.timeline: list[dict[str, Any]] = []
        self.runner: asyncio.subprocess.Process | None = None
        self.runner_log = servers.dir / "runner.log"
        self.client = aioredis.Redis.from_url(
            servers.redis.url, decode_responses=True, socket_timeout=5
        )

    async def start_runner(self) -> None:
        argv = [python(), "-m", "bullworker", "start", "--app", "bench.soak_app:app",
                "--processes", "2"]  # fmt: skip
        with self.runner_log.open("wb") as out:
            self.runner = await asyncio.create_subprocess_exec(
                *argv, env=_runner_env(self.servers, self.lock_ms), cwd=ROOT, stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while (
            len(children(self.runner.pid)) < 2
            or await leader_pid(self.client, PREFIX, QUEUE) is None
        ):
            if self.runner.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the runner did not start: {self.runner_log.read_text()[-3000:]}"
                )
            await asyncio.sleep(0.2)
        self.see_workers()
        await asyncio.sleep(5)  # both children past their start-up
        self.see_workers()

    def see_workers(self) -> None:
        assert self.runner is not None
        done = self.progress.count
        for pid in children(self.runner.pid):
            with contextlib.suppress(OSError, RuntimeError):
                rss = rss_kib(pid)
                worker = self.workers.get(pid)
                if worker is None:
                    worker = self.workers[pid] = {
                        "pid": pid, "slot": _slot(pid), "start_kib": None, "seen_at": done,
                        "warm_kib": None, "end_kib": rss, "killed": False, "born": time.monotonic(),
                    }  # fmt: skip
                worker["end_kib"] = rss
                if worker["start_kib"] is None:
                    # Idle size: once the process is past its imports and start-up.
                    if time.monotonic() - worker["born"] >= 5:
                        worker["start_kib"], worker["seen_at"] = rss, done
                elif worker["warm_kib"] is None and done >= worker["seen_at"] + self.jobs // 10:
                    worker["warm_kib"] = rss

    async def sample(self) -> None:
        """Every 0.5 s: jobs run, the recording backlog, the workers' RSS; never raises."""
        last_kept = last_said = time.monotonic()
        while True:
            self.progress.update()
            self.see_workers()
            with contextlib.suppress(Exception):  # Redis may be down or loading its AOF
                backlog = await recording_backlog(self.client, PREFIX, QUEUE)
                self.backlog_max = max(self.backlog_max, backlog.total)
                if time.monotonic() - last_kept >= 5:
                    last_kept = time.monotonic()
                    waiting = await self.client.llen(keys.queue_key(PREFIX, QUEUE, "wait"))
                    self.timeline.append({"t": round(time.time(), 1), "run": self.progress.count,
                                          "waiting": waiting, "backlog": backlog.total,
                                          "lag_s": round(backlog.lag, 2)})  # fmt: skip
                    if time.monotonic() - last_said >= 30:
                        last_said = time.monotonic()
                        self.log(f"  {self.progress.count:,} runs; {waiting:,} waiting;"
                                 f" {backlog.total:,} not recorded (oldest {backlog.lag:.1f} s)")  # fmt: skip
            await asyncio.sleep(0.5)

    async def inject_faults(self) -> None:
        for kind, fraction in FAULTS:
            await self._until_run(int(fraction * self.jobs))
            fault = Fault(kind, self.progress.count, time.time())
            self.log(f"  fault: {kind} after {fault.at_jobs:,} jobs run")
            if kind == "redis-restart":
                self.servers.redis.crash()
                await asyncio.to_thread(self.servers.redis.start)
            elif kind == "sigkill-leader":
                await self._kill_leader(fault)
            else:
                await asyncio.to_thread(self.servers.pg.restart)
            fault.ended = time.time()
            self.faults.append(fault)

    async def _until_run(self, count: int) -> None:
        while True:
            if self.progress.count >= count:
                return
            await asyncio.sleep(0.2)

    async def _kill_leader(self, fault: Fault) -> None:
        """SIGKILL the child whose pid the lease's info names; wait for the next leader."""
        assert self.runner is not None
        deadline = time.monotonic() + 60
        while True:
            pid = await leader_pid(self.client, PREFIX, QUEUE)
            if pid is not None and pid in children(self.runner.pid):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no worker process holds the recorder lease")
            await asyncio.sleep(0.2)
        self.see_workers()
        self.workers[pid]["killed"] = True
        os.kill(pid, signal.SIGKILL)
        fault.detail["pid"] = pid
        while True:
            new = await leader_pid(self.client, PREFIX, QUEUE)
            if new is not None and new != pid:
                fault.detail["new_leader_pid"] = new
                return
            await asyncio.sleep(0.1)

    async def wait_done(self, produced: list[Produced]) -> None:
        """Until the queue is empty and every finished job is recorded (twice in a row).

        Fails when nothing moves for `STUCK_S` (or 4 lock durations, if longer) while
        jobs wait to run or to be recorded: a stalled job comes back within two lock
        durations and a new leader within a lease, so anything longer is a hang.
        """
        total = sum(len(p.ids) for p in produced)
        stuck_after = max(STUCK_S, 4 * self.lock_ms / 1000)
        state: tuple[int, int, int] = (-1, -1, -1)
        moved = time.monotonic()
        calm = 0
        while calm < 2:
            await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):
                async with self.client.pipeline(transaction=False) as pipe:
                    for name in ("wait", "active"):
                        pipe.llen(keys.queue_key(PREFIX, QUEUE, name))
                    for name in ("delayed", "prioritized"):
                        pipe.zcard(keys.queue_key(PREFIX, QUEUE, name))
                    busy = sum(await pipe.execute())
                backlog = await recording_backlog(self.client, PREFIX, QUEUE)
                calm = calm + 1 if busy == 0 and backlog.total == 0 else 0
                if (now := (self.progress.count, busy, backlog.total)) != state:
                    state, moved = now, time.monotonic()
            if time.monotonic() - moved > stuck_after:
                runs, busy, unrecorded = state
                raise RuntimeError(
                    f"stuck for {stuck_after:.0f} s: {runs:,} runs of {total:,} jobs, {busy:,}"
                    f" waiting or active, {unrecorded:,} finished but not recorded"
                    " (see soak-runner.log)"
                )

    async def stop_runner(self) -> None:
        if self.runner is None or self.runner.returncode is not None:
            return
        self.runner.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.runner.wait(), 60)
        except TimeoutError:
            self.runner.kill()
            await self.runner.wait()


def _worker(seen: dict[str, Any]) -> dict[str, Any]:
    """A worker's VmRSS points; one that did not live long enough for a point has its end."""
    end = seen["end_kib"]
    start = seen["start_kib"] or end
    keep = ("pid", "slot", "killed", "end_kib")
    return {**{k: seen[k] for k in keep}, "start_kib": start, "warm_kib": seen["warm_kib"] or end}


def _slot(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"BULLWORKER_PROCESS_SLOT="):
                return int(item.split(b"=", 1)[1])
    return None


async def soak(
    jobs: int, out: Path, *, lock_ms: int = 30_000, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the soak with ``jobs`` jobs; write soak.json and soak.md to ``out``; return the data."""
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    servers = Servers()
    try:
        await asyncio.to_thread(servers.start)
        run = Soak(servers, jobs, lock_ms, log)
        try:
            data = await _run(run, log)
        finally:
            await run.stop_runner()
            await run.client.aclose()
            with contextlib.suppress(OSError):
                (out / "soak-runner.log").write_bytes(run.runner_log.read_bytes())
                # The run logs and the Node producer's ids, to trace any finding afterwards.
                shutil.rmtree(out / "soak-runs", ignore_errors=True)
                shutil.copytree(servers.runs, out / "soak-runs")
                shutil.copy(servers.dir / "node-ids.txt", out / "soak-runs")
        data["ids"] = check_rows(data.pop("produced"), data.pop("rows"), data.pop("sizes"))
        data["reruns"] = explain_reruns(read_runs(servers.runs), run.faults)
    finally:
        servers.close()
    (out / "soak.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "soak.md").write_text("\n".join(render(data)) + "\n")
    return data


async def _run(run: Soak, log: Callable[[str], None]) -> dict[str, Any]:
    """Start the runner, produce while faults strike, wait until all is recorded, measure."""
    servers, jobs = run.servers, run.jobs
    await run.start_runner()
    mem_start = int((await run.client.info("memory"))["used_memory"])
    log(f"soak: {jobs:,} jobs; Redis port {servers.redis.port}, PostgreSQL port {servers.pg.port}")
    began = time.perf_counter()
    tasks = [asyncio.create_task(run.sample()), asyncio.create_task(run.inject_faults())]
    py_size, node_size = jobs - jobs // 2, jobs // 2
    limits = {"chunk": CHUNK, "max_waiting": MAX_WAITING}
    url = servers.redis.url
    node = await NodeProducer.start(url, PREFIX, QUEUE, node_size, servers.dir, **limits)
    try:
        produced = list(
            await asyncio.gather(produce_python(url, PREFIX, QUEUE, py_size, **limits), node.wait())
        )
        log(
            f"  produced: python {len(produced[0].ids):,} in {produced[0].seconds:.0f} s,"
            f" node {len(produced[1].ids):,} in {produced[1].seconds:.0f} s"
        )
        await run.wait_done(produced)
        wall = time.perf_counter() - began
        await tasks[1]  # every fault has struck (the last at 3/4 of the jobs)
        await asyncio.sleep(2)
        run.progress.update()
        run.see_workers()
        info = await run.client.info("memory")
        kept = 0
        for status in ("completed", "failed"):
            kept += int(await run.client.zcard(keys.queue_key(PREFIX, QUEUE, status)))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        node.kill()
    await run.stop_runner()
    log(f"  drained and recorded in {wall:.0f} s; reading _jobs")
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "jobs": jobs,
        "jobs_python": py_size,
        "jobs_node": node_size,
        "lock_ms": run.lock_ms,
        "wall_s": round(wall, 1),
        "faults": [f.to_dict() for f in run.faults],
        "producer_retries": {p.name: p.retries for p in produced},
        "recording_lag": await asyncio.to_thread(recording_lag, servers.pg.url),
        "backlog_max": run.backlog_max,
        "redis_memory": {"start": mem_start, "end": int(info["used_memory"]), "kept_end": kept},
        "workers": sorted(
            (_worker(w) for w in run.workers.values()),
            key=lambda w: (w["slot"] is None, w["slot"] or 0, w["pid"]),
        ),
        "timeline": run.timeline,
        "servers": {
            "dir": str(servers.dir),
            "redis_port": servers.redis.port,
            "pg_port": servers.pg.port,
        },
        # Replaced by the verdict of check_rows in soak():
        "produced": {job_id: (p.name, seq) for p in produced for job_id, seq in p.ids.items()},
        "rows": await asyncio.to_thread(read_rows, servers.pg.url, QUEUE),
        "sizes": {p.name: p.size for p in produced},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help=f"{SMOKE_JOBS:,} jobs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--lock-ms", type=int, default=30_000, help="worker lock and stalled interval"
    )
    args = parser.parse_args(argv)
    jobs = SMOKE_JOBS if args.smoke else args.jobs

    def log(line: str) -> None:
        print(line, flush=True)

    async def guarded() -> dict[str, Any]:
        # SIGTERM (a timeout, CI) cancels the run, so that its servers and runner still stop.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await soak(jobs, args.out, lock_ms=args.lock_ms, log=log)

    data = asyncio.run(guarded())
    print("\n".join(render(data)))
    ok = data["ids"]["exactly_once"] and data["ids"]["payloads_without_row"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
