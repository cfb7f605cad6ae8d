"""Script calls in one MULTI/EXEC sent in one write (`ScriptBatch`), against a real Redis:
the path of ``queue_jobs``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bullworker.transport.bullmq_compat.lane import has_add_lane
from bullworker.transport.bullmq_compat.multi import ScriptBatch
from bullworker.transport.bullmq_compat.node_versions import PausedLayout
from bullworker.transport.connection import close_queue, open_queue, use_retry_policy
from tests.helpers import app_config
from tests.proxy import TcpProxy

# Appends ARGV[1] to the list KEYS[1] and returns the list's length; fails on "boom".
SCRIPT = """
if ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


def fresh_script(client: aioredis.Redis, body: str = SCRIPT) -> Any:
    """A script no server has loaded yet (its own comment, so its own sha)."""
    return client.register_script(f"-- {uuid.uuid4().hex}\n{body}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def batch_of(script: Any, key: str, values: list[str]) -> ScriptBatch:
    batch = ScriptBatch()
    for value in values:
        assert await batch.add(script, [key], [value]) is None  # the result comes from execute
    return batch


async def test_unloaded_scripts_run_in_one_transaction_with_replies_in_order(
    client: aioredis.Redis, prefix: str
) -> None:
    key, other = f"{prefix}:multi", f"{prefix}:multi-other"
    first, second = fresh_script(client), fresh_script(client)
    batch = await batch_of(first, key, ["a", "b"])
    batch.add(second, [other], ["x"])
    batch.add(first, [key], ["c"])
    try:
        assert await batch.execute(client) == [1, 2, 1, 3]  # loaded in the same write
        assert await client.lrange(key, 0, -1) == ["a", "b", "c"]
        assert await client.script_exists(first.sha, second.sha) == [True, True]
    finally:
        await client.delete(key, other)


async def test_a_failing_call_is_raised_after_the_others_ran(
    client: aioredis.Redis, prefix: str
) -> None:
    # As in a redis-py transaction: EXEC runs every call; the error is the caller's.
    key = f"{prefix}:multi"
    batch = await batch_of(fresh_script(client), key, ["a", "boom", "b"])
    try:
        with pytest.raises(ResponseError, match="boom"):
            await batch.execute(client)
        assert await client.lrange(key, 0, -1) == ["a", "b"]
    finally:
        await client.delete(key)


async def test_a_dropped_connection_is_retried(redis_url: str, prefix: str) -> None:
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    db = target.path.lstrip("/") or "0"
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/{db}", decode_responses=True)
    use_retry_policy(client)  # the policy a queue's client gets
    key = f"{prefix}:multi"
    script = fresh_script(client)
    try:
        assert await (await batch_of(script, key, ["before"])).execute(client) == [1]
        await proxy.cut()
        pending = asyncio.create_task((await batch_of(script, key, ["during"])).execute(client))
        await asyncio.sleep(0.5)
        assert not pending.done()  # retried, not failed
        await proxy.restore()
        assert await asyncio.wait_for(pending, 10) == [2]
        assert await client.lrange(key, 0, -1) == ["before", "during"]
    finally:
        await client.delete(key)
        await client.aclose()
        await proxy.cut()


async def test_add_bulk_mixes_waiting_delayed_and_prioritized_jobs(prefix: str) -> None:
    queue = open_queue(app_config(bull_prefix=prefix), "multi")
    try:
        assert has_add_lane(queue)
        entries: list[dict[str, Any]] = [
            {"name": "Plain", "data": {"n": 0}},
            {"name": "Later", "data": {"n": 1}, "opts": {"delay": 60_000}},
            {"name": "First", "data": {"n": 2}, "opts": {"priority": 1}},
            {"name": "Named", "data": {"n": 3}, "opts": {"jobId": "mine"}},
        ]
        ids = await PausedLayout().add_bulk(queue, entries)
        assert ids[3] == "mine" and len(set(ids)) == 4
        counts = await queue.getJobCounts("waiting", "delayed", "prioritized")
        assert counts == {"waiting": 2, "delayed": 1, "prioritized": 1}
        for job_id, entry in zip(ids, entries, strict=True):
            job = await queue.getJob(job_id)
            assert (job.name, job.data) == (entry["name"], entry["data"])
        again = await PausedLayout().add_bulk(
            queue, [{"name": "Named", "data": {"n": 4}, "opts": {"jobId": "mine"}}]
        )
        assert again == ["mine"] and (await queue.getJob("mine")).data == {"n": 3}  # kept
    finally:
        await queue.obliterate({"force": True})
        await close_queue(queue, 5)
