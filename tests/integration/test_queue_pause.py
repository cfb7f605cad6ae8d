"""A paused queue is paused for every worker; a resumed one is picked up at once.

`bullworker queues pause` is BullMQ's own pause: a running bullworker runner and a
Node BullMQ worker both leave the queue's jobs alone, and both start them as soon
as it is resumed (BullMQ's resume adds the marker their blocking fetch waits on).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from bullworker.ops.queues import set_paused
from tests.helpers import bull_queue, node_env
from tests.integration.runner_support import CountJob, make_app

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


async def started(
    queue: Any, job_id: str, timeout: float, since: float | None = None
) -> float | None:
    """Seconds from ``since`` (monotonic; default now) until the job has started
    (``processedOn``), None if not within ``timeout``."""
    begin = time.monotonic() if since is None else since
    while time.monotonic() - begin < timeout:
        job = await queue.getJob(job_id)
        if job is not None and job.processedOn:
            return time.monotonic() - begin
        await asyncio.sleep(0.005)
    return None


async def test_a_running_runner_starts_a_resumed_queue_s_job_within_a_second(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = make_app(prefix)
    runner = app.create_runner()
    await runner.start()
    try:
        async with bull_queue("default", prefix) as queue:
            await asyncio.sleep(0.5)  # the worker blocks on the queue's marker, as when idle
            paused = await set_paused(app, "default", True)
            assert (paused.paused, paused.changed) == (True, True)
            handle = await app.worker_service.queue_job(CountJob, {"n": 1})
            assert await started(queue, str(handle), timeout=2.0) is None  # paused: not taken
            resume = time.monotonic()  # from the start of the resume command's work
            resumed = await set_paused(app, "default", False)
            pickup = await started(queue, str(handle), timeout=10.0, since=resume)
            assert (resumed.paused, resumed.changed, resumed.waiting) == (False, True, 1)
    finally:
        await runner.stop(grace=1)
        await app.stop()
    with capsys.disabled():
        print(f"\nresume-to-pickup with a running runner: {pickup:.3f} s")
    assert pickup is not None and pickup < 1.0, pickup


async def run_node(script: str, prefix: str, queue: str, spec: dict[str, Any]) -> tuple[int, Any]:
    """Run a tests/node script; its exit status and the JSON line it printed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Node tests need Node.js 20+")
    proc = await asyncio.create_subprocess_exec(
        node, script, json.dumps(spec), cwd=NODE_DIR, env=node_env(prefix, queue),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), spec["deadlineMs"] / 1000 + 10)
    lines = [line for line in out.decode().split("\n") if line.strip()]
    assert lines, f"node {script} printed nothing: {err.decode()}"
    return int(proc.returncode or 0), json.loads(lines[-1])


@pytest.mark.node
async def test_a_node_worker_leaves_a_paused_queue_alone_until_it_is_resumed(prefix: str) -> None:
    app = make_app(prefix)
    try:
        await set_paused(app, "default", True)
        handle = await app.worker_service.queue_job(CountJob, {"n": 7})
        status, result = await run_node(
            "consume.mjs", prefix, "default", {"count": 1, "deadlineMs": 3000}
        )
        assert (status, result["error"], result["jobs"]) == (3, "timeout", [])  # took nothing
        async with bull_queue("default", prefix) as queue:
            assert await queue.getJobState(str(handle)) == "waiting"

        await set_paused(app, "default", False)
        status, result = await run_node(
            "consume.mjs", prefix, "default", {"count": 1, "deadlineMs": 10_000}
        )
        assert status == 0, result
        assert [(job["id"], job["data"]) for job in result["jobs"]] == [(str(handle), {"n": 7})]
    finally:
        await app.stop()
