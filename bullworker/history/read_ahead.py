"""A recorder's next read, started while the current batch is written to the store.

Reading a batch (two script calls) and writing the one before (a ``COPY`` into
PostgreSQL) wait on different servers; while the recorder is behind, doing both
at once lifts its rows per second by about a fifth. A read changes nothing in
Redis, so one made early is the read the next batch asks for, with one
difference: the current batch's jobs are not marked yet, and a scan that goes on
from a score they share would find them again. The read leaves them out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bullworker.history.batch import Batch
from bullworker.history.script_calls import Arg, FetchNew


class ReadAhead:
    """Reads of `FetchNew` on ``keys``, one of them possibly started ahead."""

    def __init__(self, fetch: FetchNew, keys: list[str]) -> None:
        self._fetch = fetch
        self._keys = keys
        self._ahead: tuple[list[Arg], asyncio.Task[str]] | None = None
        #: How many batches came from a read started ahead.
        self.used = 0

    def start(self, args: Sequence[Arg], current: Batch) -> None:
        """Start the read of ``args`` now, while ``current`` is being written."""
        self.drop()
        skip = [job.job_id for job in current.jobs]
        read = self._fetch(keys=self._keys, args=args, skip=skip)
        self._ahead = (list(args), asyncio.create_task(read, name="bullworker-read"))

    async def read(self, args: Sequence[Arg]) -> Batch:
        """The batch of ``args``: the read started ahead if it is that one, else a new one."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == list(args):
            self.used += 1
            return Batch.parse(await ahead[1])
        if ahead is not None:
            _discard(ahead[1])
        return Batch.parse(await self._fetch(keys=self._keys, args=args))

    def drop(self) -> None:
        """Forget the read started ahead (the recorder stops)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            _discard(ahead[1])


def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel a read nobody will await; a failure it ended with is not reported."""
    task.cancel()
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
