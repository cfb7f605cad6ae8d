"""A pipelined connection for the hottest script calls: ``moveToFinished`` and the adds.

Every finished job costs one ``moveToFinished`` script call (which also takes
the next job), every queued job one add script. Through redis-py each call
holds the client's only connection for a whole round trip: a worker's ten
concurrent jobs queue on its lock, and each call pays its own send, wake-up
and read. Node's ioredis instead writes every command at once and reads the
replies in order.

A lane does the same: script calls made in the same turn of the event loop go
out in one write on a connection of their own, and their replies are read in
order. The commands are packed by hiredis in one step. Nothing else changes:
the same scripts (loaded again after a ``NOSCRIPT``), the same keys and
arguments, and the client's retry policy after a connection error, which
reconnects the lane (over TLS or Sentinel too: the connection comes from the
client's own pool). Calls inside a pipeline or transaction keep redis-py's path.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.core.errors import BullmqIncompatible
from bullworker.transport.bullmq_compat.multi import ScriptBatch
from bullworker.transport.bullmq_compat.wire import evalsha, on_one_server, with_retry

#: The scripts behind ``Queue.add``, one call per job (``addBulk`` uses a transaction).
ADD_SCRIPTS = ("addStandardJob", "addDelayedJob", "addPrioritizedJob")
#: Errors after which a lane's connection is dropped and the call tried again by the retry policy.
_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.IncompleteReadError)


class Lane:
    """Lua script calls, pipelined on a connection from ``client``'s pool."""

    def __init__(self, client: Any) -> None:
        self._client = client
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
        return on_one_server(client)

    async def call(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` ``script`` (redis-py's ``AsyncScript``) with ``keys`` and ``args``.

        The reply is what redis-py would return; a script's error is raised.
        """
        return await with_retry(
            self._retry, lambda: evalsha(self._send, self._client, script, keys, args)
        )

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
            # check_health: a Sentinel connection checks there that its server is still the
            # master (bullworker's MASTER_CHECK), once for the whole batch.
            await conn.send_packed_command([packed for packed, _ in batch], check_health=True)
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


class LaneScript:
    """Stands in for an ``AsyncScript`` in bullmq's ``Scripts.commands``: calls go through
    a lane, except those queued on a pipeline (``client=``), which keep redis-py's path."""

    def __init__(self, lane: Lane, script: Any) -> None:
        self.lane = lane
        self.script = script

    def __call__(
        self,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        client: Any = None,
    ) -> Any:
        if isinstance(client, ScriptBatch):  # collected for one MULTI/EXEC (`multi`)
            return client.add(self.script, keys or (), args or ())
        if client is not None:
            return self.script(keys=keys, args=args, client=client)
        return self.lane.call(self.script, keys or (), args or ())


def use_lane(scripts: Any, client: Any, names: Sequence[str]) -> Lane | None:
    """Send bullmq's ``names`` scripts of ``scripts`` through a new lane on ``client``.

    Returns the lane (to close with its owner), or None for a client that cannot
    have one (a Redis Cluster client routes each call by its keys itself).
    """
    if not Lane.usable(client):
        return None
    missing = [name for name in names if name not in scripts.commands]
    if missing:
        raise BullmqIncompatible(f"the installed bullmq lacks its {', '.join(missing)} script(s)")
    lane = Lane(client)
    for name in names:
        scripts.commands[name] = LaneScript(lane, scripts.commands[name])
    return lane


#: The lane of each Queue that has one, closed with it.
_QUEUE_LANES: weakref.WeakKeyDictionary[Any, Lane] = weakref.WeakKeyDictionary()


def use_add_lane(queue: Any) -> None:
    """Send ``queue.add``'s script calls through a lane (a connection opened on first use)."""
    lane = use_lane(queue.scripts, queue.client, ADD_SCRIPTS)
    if lane is not None:
        _QUEUE_LANES[queue] = lane


def has_add_lane(queue: Any) -> bool:
    """Whether :func:`use_add_lane` gave ``queue`` a lane (its add scripts take a `ScriptBatch`)."""
    return queue in _QUEUE_LANES


async def close_add_lane(queue: Any) -> None:
    """Close the lane :func:`use_add_lane` gave ``queue``, if any."""
    lane = _QUEUE_LANES.pop(queue, None)
    if lane is not None:
        await lane.close()


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled; the reply is still read, in order
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)
