"""No job bullworker queues while Node BullMQ keeps the queue paused is lost when it resumes.

Node BullMQ 5.x moves a paused queue's jobs to a ``paused`` list, adds there while
paused, and on resume renames that list over ``wait``; bullmq's Python port (like
Node 6) keeps them in ``wait``. bullworker queues where the Node version sharing
the queue expects them (bullworker/transport/bullmq_compat/node_versions.py).
Each test runs real Node BullMQ: the oldest supported (5.20.0), the newest 5.x
(5.81.5) and the newest 6.x (6.7.0), from tests/node.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullworker import NodeBullmqUnsupported, create_app
from bullworker.ops.doctor import node_checks
from bullworker.transport.bullmq_compat.node_versions import pause_queue
from tests.helpers import eventually
from tests.integration import interop_app
from tests.integration.interop_app import EchoJob, reg
from tests.integration.test_node_interop import (
    NEWEST,
    NEWEST_5,
    OLDEST,
    QUEUE,
    NodeScripts,
    bull_queue,
    config_for,
    python_runner,
)

pytestmark = [pytest.mark.node, pytest.mark.timeout(40)]

EVERY_NODE = pytest.mark.parametrize("node_package", [OLDEST, NEWEST_5, NEWEST])


@pytest.fixture(autouse=True)
def _clear_records() -> None:
    interop_app.RECEIVED.clear()
    interop_app.RETURNED.clear()


def echo(who: str, n: int) -> dict[str, Any]:
    return {"name": "EchoJob", "data": {"by": who, "n": n}}


async def run_all(prefix: str, redis_url: str, expected: list[dict[str, Any]]) -> None:
    """Run the queue with a bullworker runner: each of ``expected`` runs, once."""
    async with python_runner(prefix, redis_url):
        await eventually(lambda: len(interop_app.RECEIVED) >= len(expected), timeout=15)
    key = lambda d: (d["by"], d["n"])  # noqa: E731
    assert sorted(interop_app.RECEIVED, key=key) == sorted(expected, key=key)


async def lists(client: aioredis.Redis, prefix: str) -> tuple[list[str], list[str]]:
    """The queue's wait and paused lists."""
    base = f"{prefix}:{QUEUE}"
    return await client.lrange(f"{base}:wait", 0, -1), await client.lrange(f"{base}:paused", 0, -1)


@EVERY_NODE
async def test_jobs_queued_while_node_keeps_the_queue_paused_run_once_it_resumes(
    prefix: str, redis_url: str, redis_client: aioredis.Redis, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    await node.control("add", echo("node", 0))  # waiting when the queue is paused
    paused = await node.control("pause")
    assert paused["meta"] == f"bullmq:{node.version}" and paused["paused"] is True, paused
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        service = app.worker_service
        await service.queue_job(EchoJob, {"by": "python", "n": 0})
        await service.queue_job(EchoJob, {"by": "python", "n": 1}, lifo=True)
        await service.queue_job(EchoJob, {"by": "python", "n": 2}, delay=1)
        await service.queue_jobs(EchoJob, [{"by": "bulk", "n": 0}, {"by": "bulk", "n": 1}])
        await node.control("add", echo("node", 1))  # 5.x: to its paused list
        wait, paused_list = await lists(redis_client, prefix)
        if node.version.startswith("5."):  # as 5.x keeps them: nothing in wait
            assert wait == [] and len(paused_list) == 6, (wait, paused_list)
        else:
            assert len(wait) == 6 and paused_list == [], (wait, paused_list)
        await service.queue_job(EchoJob, {"by": "python", "n": 3})
    finally:
        await app.stop()
    resumed = await node.control("resume")
    assert resumed["paused"] is False

    wait, paused_list = await lists(redis_client, prefix)
    assert len(wait) == 7 and paused_list == [], (wait, paused_list)
    expected = [{"by": "node", "n": n} for n in range(2)]
    expected += [{"by": "python", "n": n} for n in range(4)]
    expected += [{"by": "bulk", "n": n} for n in range(2)]
    await run_all(prefix, redis_url, expected)


@EVERY_NODE
async def test_a_bullworker_pause_resumed_by_node_keeps_every_job(
    prefix: str, redis_url: str, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    await node.control("add", echo("node", 0))
    async with bull_queue(prefix, redis_url) as queue:
        await pause_queue(queue, True)
        assert await queue.isPaused()
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        await app.worker_service.queue_job(EchoJob, {"by": "python", "n": 0})
    finally:
        await app.stop()
    await node.control("add", echo("node", 1))
    assert (await node.control("resume"))["paused"] is False

    expected = [{"by": "node", "n": 0}, {"by": "python", "n": 0}, {"by": "node", "n": 1}]
    await run_all(prefix, redis_url, expected)


@pytest.mark.parametrize("node_package", [OLDEST, NEWEST_5])
async def test_jobs_a_runner_promotes_while_node_5_pauses_survive_a_bullworker_resume(
    prefix: str, redis_url: str, redis_client: aioredis.Redis, node_package: str
) -> None:
    """What the runner's start-up warning advises: resume with bullworker, not Node 5.x."""
    node = NodeScripts(prefix, redis_url, node_package)
    await node.control("pause")
    delayed = f"{prefix}:{QUEUE}:delayed"

    async def promoted() -> bool:
        return await redis_client.zcard(delayed) == 0

    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        async with python_runner(prefix, redis_url):
            await app.worker_service.queue_job(EchoJob, {"by": "python", "n": 0}, delay=50)
            await node.control("add", echo("node", 0))  # makes 5.x's paused list
            # The runner moves the job, once due, to wait (the port's Lua does): a 5.x
            # resume would drop it there; bullworker's resume takes both lists.
            await eventually(promoted, timeout=12)
            async with bull_queue(prefix, redis_url) as queue:
                await pause_queue(queue, False)
            await eventually(lambda: len(interop_app.RECEIVED) >= 2, timeout=10)
    finally:
        await app.stop()
    assert sorted(interop_app.RECEIVED, key=lambda d: d["by"]) == [
        {"by": "node", "n": 0},
        {"by": "python", "n": 0},
    ]


async def test_a_queue_node_5_marks_without_a_version_is_queued_to_safely(
    prefix: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    """A Node BullMQ before 5.20 records no version, but its paused list tells."""
    base = f"{prefix}:{QUEUE}"
    await redis_client.hset(f"{base}:meta", "paused", 1)
    await redis_client.rpush(f"{base}:paused", "node-old-1")
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        job_id = await app.worker_service.queue_job(EchoJob, {"by": "python", "n": 0})
        [check] = await node_checks(redis_client, app)
    finally:
        await app.stop()
    assert await lists(redis_client, prefix) == ([], [job_id, "node-old-1"])
    assert check.level == "WARN" and "older than 5.20" in check.message, check


async def test_a_node_bullmq_older_than_supported_is_refused_in_one_line(
    prefix: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(f"{prefix}:{QUEUE}:meta", "version", "bullmq:4.18.0")
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        with pytest.raises(NodeBullmqUnsupported) as refused:
            await app.worker_service.queue_job(EchoJob, {"by": "python", "n": 0})
        with pytest.raises(NodeBullmqUnsupported):
            await app.worker_service.queue_jobs(EchoJob, [{"by": "python", "n": 1}])
        [check] = await node_checks(redis_client, app)
    finally:
        await app.stop()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"queue {QUEUE} is shared with Node BullMQ 4.18.0, older than 5.20.0")
    assert refused.value.exit_code == 4
    assert await redis_client.llen(f"{prefix}:{QUEUE}:wait") == 0  # nothing was queued
    assert check.level == "FAIL" and check.message == message, check


@pytest.mark.parametrize("node_package", [OLDEST, NEWEST])
async def test_doctor_and_the_runner_say_which_node_bullmq_shares_the_queue(
    prefix: str, redis_url: str, redis_client: aioredis.Redis, node_package: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    node = NodeScripts(prefix, redis_url, node_package)
    await node.control("add", echo("node", 0))
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        [check] = await node_checks(redis_client, app)
    finally:
        await app.stop()
    with caplog.at_level(logging.WARNING, logger="bullworker.runner"):
        async with python_runner(prefix, redis_url):
            pass
    warned = [r.getMessage() for r in caplog.records if "Node BullMQ" in r.getMessage()]
    name = f"Node BullMQ {node.version}"
    if node.version.startswith("5."):
        assert check.level == "WARN" and name in check.message, check
        assert "separate list" in check.message
        [line] = warned
        assert line == check.message
    else:
        assert check.level == "OK" and name in check.message, check
        assert warned == []
