"""Script calls in one MULTI/EXEC sent in one write (`ScriptBatch`), against a real Redis:
the path of ``queue_jobs``."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from bullworker.transport.bullmq_compat.lane import has_add_lane
from bullworker.transport.bullmq_compat.multi import ScriptBatch
from bullworker.transport.bullmq_compat.node_versions import PausedLayout
from bullworker.transport.connection import close_queue, open_queue
from tests.helpers import app_config
from tests.proxy import TcpProxy
from tests.test_lane import client as client  # the fixture: a client of the test Redis
from tests.test_lane import fresh_script, retried_across_a_cut
from tests.test_lane import proxied as proxied  # the fixture: a client through a TcpProxy


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


async def test_a_dropped_connection_is_retried(
    proxied: tuple[TcpProxy, aioredis.Redis], prefix: str
) -> None:
    key, client = f"{prefix}:multi", proxied[1]
    script = fresh_script(client)

    async def add(value: str) -> Any:
        return await (await batch_of(script, key, [value])).execute(client)

    assert await retried_across_a_cut(proxied, key, add) == [[1], [2]]


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
