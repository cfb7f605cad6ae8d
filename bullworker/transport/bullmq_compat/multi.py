"""Script calls in one MULTI/EXEC, sent in one write: how bullworker runs ``addBulk``.

redis-py runs a transaction of script calls as ``SCRIPT EXISTS`` (a round trip
of its own), then every command packed in Python, then ``MULTI ... EXEC``. A
`ScriptBatch` collects the same calls (bullmq's add functions take it as their
``pipe``, through the `LaneScript` of a queue's lane) and sends them at once,
packed by hiredis: ``SCRIPT LOAD`` of each script first (a no-op on a server that
has it, and what makes a ``NOSCRIPT`` inside the transaction impossible), then
``MULTI``, the calls and ``EXEC``. The calls run atomically, as in ``addBulk``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import ExecAbortError, ResponseError

from bullworker.transport.bullmq_compat.wire import round_trip, with_retry


class ScriptBatch:
    """Script calls collected for one transaction, run by :meth:`execute`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Sequence[Any], Sequence[Any]]] = []

    def add(self, script: Any, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[None]:
        """Queue ``script`` (redis-py's ``AsyncScript``); the result comes from :meth:`execute`."""
        self.calls.append((script, keys, args))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def execute(self, client: Any) -> list[Any]:
        """Run the calls in one MULTI/EXEC on a connection of ``client``'s pool; their
        replies in order. A call's error is raised (the others have run, as in a
        redis-py transaction); a connection error is retried by the client's policy."""
        scripts = {script.sha: script for script, _, _ in self.calls}
        commands = [
            *(("SCRIPT", "LOAD", script.script) for script in scripts.values()),
            ("MULTI",),
            *(("EVALSHA", s.sha, len(keys), *keys, *args) for s, keys, args in self.calls),
            ("EXEC",),
        ]
        packed = [hiredis.pack_command(command) for command in commands]
        retry = client.connection_pool.connection_kwargs.get("retry")
        replies = await with_retry(retry, lambda: round_trip(client, packed))
        queued, result = replies[len(scripts) : -1], replies[-1]
        if isinstance(result, ExecAbortError) or not isinstance(result, list):
            raise next((r for r in queued if isinstance(r, ResponseError)), result)
        for reply in result:
            if isinstance(reply, ResponseError):
                raise reply
        return result
