"""Commands packed by hiredis in one step and sent on a pooled connection of a client.

redis-py packs each argument of a command in Python: for bullworker's hottest
calls (script calls with many keys, batches of them) that was most of their
CPU. These helpers pack with hiredis, write once and read the replies in order,
on a connection of the client's own pool (TLS and Sentinel included), under the
client's retry policy.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError


def on_one_server(client: Any) -> bool:
    """Whether ``client`` talks to one server through its own pool (not a Redis Cluster
    client, which routes each call by its keys): the helpers here need such a client."""
    return isinstance(client, Redis)


async def call_script(client: Any, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``script(keys=keys, args=args)``, packed by hiredis in one step on a connection of
    ``client``'s pool: for the recorder's calls with thousands of keys and arguments,
    which redis-py packs one at a time in Python. A cluster client keeps its own path."""
    if not on_one_server(client):
        return await script(keys=keys, args=args)
    retry = client.connection_pool.connection_kwargs.get("retry")
    send = functools.partial(_one_reply, client)
    return await with_retry(retry, lambda: evalsha(send, client, script, keys, args))


async def with_retry(retry: Any, call: Callable[[], Awaitable[Any]]) -> Any:
    """``call()`` under the client's retry policy (redis-py's ``Retry``), if it has one."""
    if retry is None:
        return await call()
    return await retry.call_with_retry(call, _dropped)


async def evalsha(
    send: Callable[[bytes], Awaitable[Any]],
    client: Any,
    script: Any,
    keys: Sequence[Any],
    args: Sequence[Any],
) -> Any:
    """``EVALSHA`` packed by hiredis, through ``send``; after a ``NOSCRIPT`` (a restarted or
    flushed server) the script is loaded through ``client`` and called once more."""
    try:
        return await send(hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)))
    except NoScriptError:
        script.sha = await client.script_load(script.script)
        return await send(hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args)))


async def round_trip(client: Any, packed: Sequence[bytes]) -> list[Any]:
    """Send ``packed`` commands in one write on a connection of ``client``'s pool and read
    their replies in order; an error reply is returned in its place, not raised."""
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(packed, check_health=True)
        replies: list[Any] = []
        for _ in packed:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # this command's error: the connection is fine
                replies.append(exc)
        return replies
    except BaseException:
        await conn.disconnect()  # not given back half-read
        raise
    finally:
        await pool.release(conn)


async def _one_reply(client: Any, packed: bytes) -> Any:
    [reply] = await round_trip(client, [packed])
    if isinstance(reply, Exception):
        raise reply
    return reply


async def _dropped(_error: Exception) -> None:
    """The retry policy's failure handler: the broken connection has been dropped already."""
