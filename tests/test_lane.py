"""The worker's pipelined lane for moveToFinished, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bullworker.transport.bullmq_compat.lane import Lane
from bullworker.transport.bullmq_compat.wire import call_script
from bullworker.transport.connection import use_retry_policy
from tests.proxy import TcpProxy

# Appends ARGV[1] to the list KEYS[1] and returns the list's length; fails on "boom".
SCRIPT = """
if ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


def fresh_script(client: aioredis.Redis) -> Any:
    """`SCRIPT` with a comment nobody else's script has: no server has loaded it yet."""
    return client.register_script(f"-- {uuid.uuid4().hex}\n{SCRIPT}")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def proxied(redis_url: str) -> AsyncIterator[tuple[TcpProxy, aioredis.Redis]]:
    """A client with the retry policy bullworker gives its clients, reaching the test Redis
    through a proxy that can cut the connection."""
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    db = target.path.lstrip("/") or "0"
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{proxy.port}/{db}", decode_responses=True)
    use_retry_policy(client)
    yield proxy, client
    await client.aclose()
    await proxy.cut()


async def test_calls_made_together_get_their_own_replies_in_order(
    client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:lane"
    script = fresh_script(client)
    lane = Lane(client)
    try:
        assert (
            await lane.call(script, [key], ["loaded"]) == 1
        )  # after NOSCRIPT, loaded and sent again
        await client.delete(key)
        replies = await asyncio.gather(
            *(lane.call(script, [key], [str(n)]) for n in range(50)), return_exceptions=True
        )
        assert sorted(replies) == list(range(1, 51))  # type: ignore[type-var]
        assert await client.lrange(key, 0, -1) == [str(n) for n in range(50)]
        mixed = await asyncio.gather(
            lane.call(script, [key], ["a"]), lane.call(script, [key], ["boom"]), lane.call(script, [key], ["b"]),
            return_exceptions=True,
        )  # fmt: skip
        assert mixed[0] == 51 and mixed[2] == 52, mixed
        assert isinstance(mixed[1], ResponseError) and "boom" in str(mixed[1])
    finally:
        await lane.close()
        await client.delete(key)


async def retried_across_a_cut(
    proxied: tuple[TcpProxy, aioredis.Redis], key: str, call: Callable[[str], Awaitable[Any]]
) -> list[Any]:
    """``call("before")``, then ``call("during")`` made while the proxy is cut: it is retried,
    not failed, and done once the proxy is back. Returns both replies."""
    proxy, client = proxied
    try:
        before = await call("before")
        await proxy.cut()
        pending = asyncio.create_task(call("during"))
        await asyncio.sleep(0.5)
        assert not pending.done()  # retried, not failed
        await proxy.restore()
        during = await asyncio.wait_for(pending, 10)
        assert await client.lrange(key, 0, -1) == ["before", "during"]
        return [before, during]
    finally:
        await client.delete(key)


async def test_a_dropped_connection_is_reopened_and_the_call_retried(
    proxied: tuple[TcpProxy, aioredis.Redis], prefix: str
) -> None:
    key, client = f"{prefix}:lane", proxied[1]
    script, lane = fresh_script(client), Lane(client)
    try:
        assert await retried_across_a_cut(
            proxied, key, lambda value: lane.call(script, [key], [value])
        ) == [1, 2]  # fmt: skip
    finally:
        await lane.close()


async def test_a_closed_lane_refuses_calls(client: aioredis.Redis, prefix: str) -> None:
    script = fresh_script(client)
    lane = Lane(client)
    assert await lane.call(script, [f"{prefix}:lane"], ["x"]) == 1
    await lane.close()
    with pytest.raises(RedisConnectionError, match="closed"):
        await lane.call(script, [f"{prefix}:lane"], ["y"])
    await client.delete(f"{prefix}:lane")


def test_only_plain_clients_get_a_lane(redis_url: str) -> None:
    assert Lane.usable(aioredis.Redis.from_url(redis_url))
    assert not Lane.usable(object())


async def test_a_single_call_packs_thousands_of_arguments(
    client: aioredis.Redis, prefix: str
) -> None:
    key = f"{prefix}:lane"
    script = client.register_script(
        f"-- {uuid.uuid4().hex}\nif ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end\n"
        "return redis.call('RPUSH', KEYS[1], unpack(ARGV))"
    )
    try:
        values = [str(n) for n in range(3000)]
        assert await call_script(client, script, [key], values) == 3000  # after NOSCRIPT
        assert await client.lrange(key, 0, -1) == values
        with pytest.raises(ResponseError, match="boom"):
            await call_script(client, script, [key], ["boom"])
        assert await call_script(client, script, [key], ["after"]) == 3001
    finally:
        await client.delete(key)
