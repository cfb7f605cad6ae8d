"""A pipelined connection for the worker's hottest call, ``moveToFinished``.

Every finished job costs one ``moveToFinished`` script call (which also takes
the next job). Through redis-py each call holds the client's only connection
for a whole round trip: the worker's ten concurrent jobs queue on its lock,
and each call pays its own send, wake-up and read. Node's ioredis instead
writes every command at once and reads the replies in order.

A lane does the same for one script: calls made in the same turn of the event
loop go out in one write on a connection of their own, and their replies are
read in order. The commands are packed by hiredis in one step. Nothing else
changes: the same script (loaded again after a ``NOSCRIPT``), the same keys and
arguments, and the client's retry policy after a connection error, which
reconnects the lane (over TLS or Sentinel too: the connection comes from the
client's own pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Errors after which a lane's connection is dropped and the call tried again by the retry policy.
_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.IncompleteReadError)


class ScriptLane:
    """Calls of one Lua script, pipelined on a connection from ``client``'s pool."""

    def __init__(self, client: Any, script: Any) -> None:
        self._client = client
        self._script = script  # redis-py's AsyncScript: .sha and .script
        self._pool = client.connection_pool
        self._retry = self._pool.connection_kwargs.get("retry")
        self._conn: Any = None
        self._queued: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def usable(cls, client: Any) -> bool:
        """Whether ``client`` is a plain client with a pool a lane can take a connection from."""
        return isinstance(client, Redis)  # not a RedisCluster, which routes by key

    async def call(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` the script with ``keys`` and ``args``; the reply, as redis-py would give it."""
        if self._retry is None:
            return await self._call_once(keys, args)
        return await self._retry.call_with_retry(lambda: self._call_once(keys, args), _dropped)

    async def _call_once(self, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        packed = hiredis.pack_command(("EVALSHA", self._script.sha, len(keys), *keys, *args))
        try:
            return await self._send(packed)
        except NoScriptError:  # a restarted or flushed server: load it, then once more
            self._script.sha = await self._client.script_load(self._script.script)
            packed = hiredis.pack_command(("EVALSHA", self._script.sha, len(keys), *keys, *args))
            return await self._send(packed)

    async def _send(self, packed: bytes) -> Any:
        if self._closed:
            raise RedisConnectionError("the worker's connection is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((packed, future))
        self._wake.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="bullworker-lane")
        return await future

    async def _run(self) -> None:
        """Write what is queued in one go, read the replies in order; until closed."""
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queued = self._queued, []
            if batch:
                await self._exchange(batch)

    async def _exchange(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        answered = 0
        try:
            if self._conn is None:
                self._conn = await self._pool.get_connection()
            conn = self._conn
            await conn.send_packed_command([packed for packed, _ in batch], check_health=False)
            for _, future in batch:
                try:
                    reply = await conn.read_response()
                except ResponseError as exc:  # this call's error; the connection is fine
                    reply = exc
                answered += 1
                _settle(future, reply)
        except BaseException as exc:
            await self._drop()
            error = exc if isinstance(exc, _BROKEN) else RedisConnectionError(str(exc))
            for _, future in batch[answered:]:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()
            await self._pool.release(conn)

    async def close(self) -> None:
        """Stop the lane and give its connection back; later calls raise a connection error."""
        self._closed = True
        self._wake.set()
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        for _, future in self._queued:
            if not future.done():
                future.set_exception(RedisConnectionError("the worker's connection is closed"))
        self._queued = []
        await self._drop()


async def _dropped(_error: Exception) -> None:
    """The retry policy's failure handler: the lane has already dropped its connection."""


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled; the reply is still read, in order
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)
