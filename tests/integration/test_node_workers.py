"""What Node tools see of a runner: its workers (``Queue.getWorkers``) and ``processedBy``.

bull-board lists a queue's workers with Node's ``Queue.getWorkers()``, which
finds them by Redis client name, and shows who processed a job from its
``processedBy`` field. Both must read a bullworker runner as a Node worker.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bullworker import create_app
from tests.helpers import app_config, bull_queue, eventually
from tests.integration.interop_app import EchoJob, FailingJob, reg
from tests.integration.test_node_interop import QUEUE, NodeScripts

pytestmark = [pytest.mark.node, pytest.mark.timeout(30)]


async def test_node_lists_the_runner_and_reads_who_processed_each_job(
    prefix: str, redis_url: str
) -> None:
    node = NodeScripts(prefix, redis_url)
    config = app_config(
        bull_prefix=prefix,
        bull_queue=QUEUE,
        redis_url=redis_url,
        app_env="production",
        record_jobs=False,
        worker_concurrency=1,
    )
    app = create_app(config=config, enable_worker=True, registry=reg)
    # One at a time: the first job is taken by moveToActive, the others by the
    # moveToFinished of the job before them (fetch-next), also after a failure.
    ids = await app.worker_service.queue_jobs(EchoJob, [{"n": n} for n in range(3)])
    ids.append(await app.worker_service.queue_job(FailingJob, {}))
    ids += await app.worker_service.queue_jobs(EchoJob, [{"n": n} for n in range(3, 5)])
    runner = app.create_runner()
    await runner.start()
    try:
        worker = runner.workers[QUEUE]
        async with bull_queue(QUEUE, prefix, redis_url) as queue:

            async def all_done() -> bool:
                counts = await queue.getJobCounts("completed", "failed")
                return counts["completed"] == 5 and counts["failed"] == 1

            await eventually(all_done, timeout=15)
        seen = await node.run("queue_workers.mjs", {"jobIds": ids})
    finally:
        await runner.stop(grace=5)
        await app.stop()
    name = worker.opts["name"]
    encoded = base64.b64encode(QUEUE.encode()).decode()
    # One entry per worker, as for a Node worker: its blocking connection's name.
    workers: list[dict[str, Any]] = seen["workers"]
    assert [(w["name"], w["rawname"]) for w in workers] == [
        (QUEUE, f"{prefix}:{encoded}:w:{name}")
    ], workers
    assert {job_id: job["processedBy"] for job_id, job in seen["jobs"].items()} == {
        job_id: name for job_id in ids
    }, seen["jobs"]
    assert seen["jobs"][ids[3]]["state"] == "failed"


async def test_processed_by_costs_no_call(prefix: str, redis_url: str, redis_client: Any) -> None:
    """The name rides in the calls the worker makes anyway: still one call per job."""
    config = app_config(
        bull_prefix=prefix, bull_queue=QUEUE, app_env="production", record_jobs=False
    )
    app = create_app(config=config, enable_worker=True, registry=reg)
    ids = await app.worker_service.queue_jobs(EchoJob, [{"n": n} for n in range(50)])
    runner = app.create_runner()
    await runner.start()
    worker = runner.workers[QUEUE]
    calls = {"active": 0}
    move_to_active = worker.backend.moveToActive

    async def counted(*args: Any) -> Any:
        calls["active"] += 1
        return await move_to_active(*args)

    worker.backend.moveToActive = counted
    try:
        async with bull_queue(QUEUE, prefix, redis_url) as queue:

            async def all_done() -> bool:
                return (await queue.getJobCounts("completed"))["completed"] == 50

            await eventually(all_done, timeout=15)
    finally:
        await runner.stop(grace=5)
        await app.stop()
    # The job hash's field "pb" (bullmq's Python Job does not read it; Node's does).
    names = {await redis_client.hget(f"{prefix}:{QUEUE}:{job_id}", "pb") for job_id in ids}
    assert names == {worker.opts["name"]}
    assert calls["active"] <= 10 + 10, calls  # a first take per slot, and a few more
