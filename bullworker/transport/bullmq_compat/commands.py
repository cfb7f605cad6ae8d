"""The Lua calls BullWorker makes its own way, as Node BullMQ 6.7 makes them.

- ``moveToActive`` with the worker's ``name`` in its packed options, and the
  same ``name`` in those of a ``moveToFinished`` that takes the next job:
  BullMQ's Lua then writes the job's ``processedBy`` (bullmq's Python port
  passes no name). Same calls, same round trips.
- ``moveJobFromActiveToWait``, which the port ships but never calls: a job
  whose handler raised ``RateLimited`` goes back to waiting without spending
  an attempt (Node's ``RateLimitError``).
- The Redis client name Node's ``Queue.getWorkers()`` (and so bull-board)
  looks for: ``<prefix>:<base64 of the queue>:w:<worker name>``.

``moveToFinished`` goes through a pipelined lane (:mod:`.lane`) where the
client allows one.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import msgpack  # type: ignore[import-untyped]

from bullworker.core.errors import BullmqIncompatible
from bullworker.transport.bullmq_compat.lane import Lane

#: Node's ``Number.MAX_SAFE_INTEGER``: the value ``Queue.rateLimit`` stores in the limiter key.
MAX_SAFE_INTEGER = 2**53 - 1
_ACTIVE_KEYS = (
    "wait", "active", "prioritized", "events", "stalled", "limiter", "delayed", "paused", "meta",
    "pc", "marker",
)  # fmt: skip
_BACK_TO_WAIT_KEYS = (
    "active", "wait", "stalled", "paused", "meta", "limiter", "prioritized", "marker", "events",
)  # fmt: skip
_BACK_TO_WAIT_SCRIPT = "moveJobFromActiveToWait-9.lua"
#: moveToFinished's ARGV (0-based here): the fetch-next flag, and the packed options.
_FETCH_NEXT_ARG = 5
_PACKED_OPTS_ARG = 7
#: msgpack's fixmap type byte (a map of up to 15 entries is 0x80 plus its size).
_FIXMAP = 0x80


def node_client_name(prefix: str, queue: str, worker_name: str | None = None) -> str:
    """The client name of a worker as Node BullMQ sets it (``clientName`` there)."""
    encoded = base64.b64encode(queue.encode()).decode()
    return f"{prefix}:{encoded}:w:{worker_name}" if worker_name else f"{prefix}:{encoded}"


def _load_script(name: str) -> str:
    from bullmq.redis_connection import loadScript

    try:
        return str(loadScript(name))
    except OSError as exc:
        raise BullmqIncompatible(
            f"the installed bullmq lacks its Lua script {name} ({type(exc).__name__})"
        ) from None


class WorkerCommands:
    """The calls above, bound to one bullmq Worker's queue, connection and name."""

    def __init__(self, worker: Any) -> None:
        scripts = worker.scripts
        self._scripts = scripts
        self.name: str | None = worker.workerName
        self._active = scripts.commands["moveToActive"]
        self._active_keys = scripts.getKeys(list(_ACTIVE_KEYS))
        self._back_to_wait = worker.client.register_script(_load_script(_BACK_TO_WAIT_SCRIPT))
        self._back_to_wait_keys = scripts.getKeys(list(_BACK_TO_WAIT_KEYS))
        self._limiter_key: str = scripts.keys["limiter"]
        self._prefix_key: str = scripts.keys[""]
        self._client = worker.client
        self._move_to_finished = scripts.moveToFinished
        self._finished = scripts.commands["moveToFinished"]
        self._lane = Lane(worker.client) if Lane.usable(worker.client) else None
        # The worker's name as msgpack, appended to moveToFinished's packed options.
        self._packed_name = (
            msgpack.packb("name") + msgpack.packb(self.name, use_bin_type=True)
            if self.name
            else b""
        )

    def install(self) -> None:
        """Name the worker in the ``moveToFinished`` calls that take the next job."""
        self._scripts.moveToFinished = self._move_to_finished_named

    async def move_to_active(self, token: str, opts: dict[str, Any]) -> list[Any]:
        """``backend.moveToActive``, with the worker's name (the job's ``processedBy``)."""
        from bullmq.scripts import raw2NextJobData

        packed = msgpack.packb(
            {
                "token": token,
                "lockDuration": opts.get("lockDuration", 0),
                "limiter": opts.get("limiter"),
                "name": self.name,
            },
            use_bin_type=True,
        )
        args = [self._prefix_key, round(time.time() * 1000), packed]
        result = await self._active(keys=self._active_keys, args=args)
        return raw2NextJobData(result)  # type: ignore[no-any-return]

    async def _move_to_finished_named(self, job_id: str, keys: list[Any], args: list[Any]) -> Any:
        """``Scripts.moveToFinished``; one that takes the next job names the worker."""
        if self.name and len(args) > _PACKED_OPTS_ARG and args[_FETCH_NEXT_ARG] == "1":
            args[_PACKED_OPTS_ARG] = self._with_name(args[_PACKED_OPTS_ARG])
        if self._lane is None:
            return await self._move_to_finished(job_id, keys, args)
        from bullmq.scripts import raw2NextJobData

        result = await self._lane.call(self._finished, keys, args)
        if isinstance(result, int) and result < 0:
            raise self._scripts.finishedErrors(
                {"code": result, "jobId": job_id, "command": "moveToFinished", "state": "active"}
            )
        return None if result is None else raw2NextJobData(result)

    def _with_name(self, packed: bytes) -> bytes:
        """The packed options map with ``name`` added (``processedBy``), without unpacking it."""
        size = packed[0] - _FIXMAP
        if 0 <= size < 15:  # a msgpack fixmap: bump its count, append the entry
            return bytes((packed[0] + 1,)) + packed[1:] + self._packed_name
        opts = msgpack.unpackb(packed, raw=False)
        opts["name"] = self.name
        return msgpack.packb(opts, use_bin_type=True)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close the pipelined lane, if there is one."""
        if self._lane is not None:
            await self._lane.close()

    async def rate_limit(self, delay_ms: int) -> None:
        """Node's ``Queue.rateLimit``: no worker of the queue with a limiter takes a job for a while."""
        await self._client.set(self._limiter_key, MAX_SAFE_INTEGER, px=delay_ms)

    async def move_back_to_wait(self, job_id: str, token: str) -> int:
        """Node's ``job.moveToWait(token)``: active to waiting, no attempt spent.

        Returns the milliseconds the queue stays rate-limited (the limiter key's TTL).
        """
        args = [job_id, token, f"{self._prefix_key}{job_id}"]
        result = await self._back_to_wait(keys=self._back_to_wait_keys, args=args)
        if isinstance(result, int) and result < 0:
            raise self._scripts.finishedErrors(
                {
                    "code": result,
                    "jobId": job_id,
                    "command": "moveJobFromActiveToWait",
                    "state": "active",
                }
            )
        return int(result or 0)
