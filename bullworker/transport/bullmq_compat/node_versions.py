"""The Node BullMQ versions that share a queue with bullworker, and their paused queues.

Node BullMQ writes ``<library>:<version>`` into the ``version`` field of a
queue's meta hash when one of its ``Queue`` objects starts (``bullmq:5.81.5``;
since 5.20.0, before that nothing). bullworker reads it to know how a paused
queue is stored:

- BullMQ 6 (and bullmq's Python port, which bullworker runs) keeps a paused
  queue's jobs in its ``wait`` list and marks the pause in ``meta.paused``.
- BullMQ 5 moves them to a separate ``paused`` list (``RENAME wait paused``),
  adds to that list while paused, and on resume renames it back over ``wait``:
  whatever was put in ``wait`` meanwhile is dropped.

The port's add scripts always push to ``wait``, so a job bullworker queued
while Node 5.x kept the queue paused was lost on resume. :class:`PausedLayout`
queues such jobs where 5.x expects them: the port's add, then bullworker's own
small script (:data:`_SWEEP`, not an edit of bullmq's Lua) that moves what is in
``wait`` to ``paused`` when the queue is paused and 5.x shares it, both in one
MULTI/EXEC, so that no resume can come in between. A queue without a 5.x
version costs nothing more: the plain add, and every :data:`RECHECK_SECONDS`
one add that looks at the meta again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from bullworker.core.errors import NodeBullmqUnsupported
from bullworker.transport.bullmq_compat.lane import has_add_lane
from bullworker.transport.bullmq_compat.multi import ScriptBatch

#: The oldest Node BullMQ bullworker shares queues with: the first that records
#: its version in the queue's meta (tested in tests/node as ``bullmq5-oldest``).
OLDEST_SUPPORTED = (5, 20, 0)
#: The newest tested (tests/node's ``bullmq``); later 6.x keep the same layout.
NEWEST_TESTED = (6, 7, 0)
#: From this major on, a paused queue's jobs stay in ``wait``.
WAIT_LIST_MAJOR = 6
#: How often a queue without Node 5.x is looked at again (one guarded add each time).
RECHECK_SECONDS = 1.0

#: bullworker's own script, run right after the port's add scripts in the same
#: MULTI. KEYS: wait, paused, meta. ARGV[1]: how many of the jobs just added went
#: LIFO (to wait's right end: the next to run). When the queue is paused and
#: Node 5.x shares it (its version in meta, or a ``paused`` list, which only 5.x
#: makes), wait's jobs go where 5.x would have put them: behind the paused ones
#: in their order, LIFO ones in front. Returns {version or false, paused 0/1,
#: whether a paused list existed 0/1, jobs moved}.
_SWEEP = """
local rcall = redis.call
local meta = rcall("HMGET", KEYS[3], "paused", "version")
local version = meta[2]
local major = nil
if version then major = tonumber(string.match(version, "^bullmq:(%d+)%.")) end
local had_list = rcall("EXISTS", KEYS[2]) == 1
local legacy = (major ~= nil and major < 6) or had_list
local moved = 0
if meta[1] and legacy then
  local lifo = {}
  local n = tonumber(ARGV[1]) or 0
  if n > 0 then
    lifo = rcall("LRANGE", KEYS[1], -n, -1)
    rcall("LTRIM", KEYS[1], 0, -n - 1)
  end
  if rcall("EXISTS", KEYS[2]) == 0 then
    moved = rcall("LLEN", KEYS[1])
    if moved > 0 then rcall("RENAME", KEYS[1], KEYS[2]) end
  else
    while true do
      local jobs = rcall("LRANGE", KEYS[1], -1000, -1)
      if #jobs == 0 then break end
      local oldest_first = {}
      for i = #jobs, 1, -1 do oldest_first[#oldest_first + 1] = jobs[i] end
      rcall("LPUSH", KEYS[2], unpack(oldest_first))
      rcall("LTRIM", KEYS[1], 0, -#jobs - 1)
      moved = moved + #jobs
    end
  end
  if #lifo > 0 then
    rcall("RPUSH", KEYS[2], unpack(lifo))
    moved = moved + #lifo
  end
end
return {version or false, meta[1] and 1 or 0, had_list and 1 or 0, moved}
"""

_VERSION = re.compile(r"^(?P<lib>[^:]+):(?P<version>\d+(?:\.\d+)*)")

Support = Literal["none", "supported", "legacy", "unrecorded", "old", "newer", "unknown"]


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _shown(numbers: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in numbers)


def supported_range() -> str:
    """``5.20.0 to 6.7.x``: the Node BullMQ versions bullworker is tested with."""
    return f"{_shown(OLDEST_SUPPORTED)} to {_shown(NEWEST_TESTED[:2])}.x"


@dataclass(frozen=True, slots=True)
class NodeBullmq:
    """What a queue's meta (and its keys) say about the Node BullMQ sharing it."""

    #: The meta's ``version`` field as written (``bullmq:5.81.5``), None if absent.
    raw: str | None
    #: ``meta.paused`` is set.
    paused: bool = False
    #: A ``paused`` list exists: only Node BullMQ 5.x and older make one.
    paused_list: bool = False

    @property
    def numbers(self) -> tuple[int, ...] | None:
        """The version of Node's ``bullmq`` package; None for none or another library."""
        found = _VERSION.match(self.raw or "")
        if found is None or found["lib"] != "bullmq":
            return None
        return _numbers(found["version"])

    @property
    def legacy_layout(self) -> bool:
        """A Node BullMQ that keeps a paused queue's jobs in the ``paused`` list shares it."""
        numbers = self.numbers
        return self.paused_list or (numbers is not None and numbers[0] < WAIT_LIST_MAJOR)

    @property
    def support(self) -> Support:
        """``none``: no version recorded; ``supported``: 6.x up to the newest tested;
        ``legacy``: 5.x from 5.20.0 (supported; a paused queue's jobs in a separate
        list); ``unrecorded``: a ``paused`` list but no version (a Node BullMQ before
        5.20); ``old``: a recorded version below 5.20.0; ``newer``: than tested;
        ``unknown``: another library."""
        numbers = self.numbers
        if numbers is None:
            if self.raw is not None:
                return "unknown"
            return "unrecorded" if self.paused_list else "none"
        if numbers < OLDEST_SUPPORTED:
            return "old"
        if numbers[0] < WAIT_LIST_MAJOR:
            return "legacy"
        if numbers[:2] > NEWEST_TESTED[:2]:
            return "newer"
        return "supported"

    @property
    def name(self) -> str:
        """``Node BullMQ 5.81.5``, or the meta's text for another library."""
        numbers = self.numbers
        if numbers is not None:
            return f"Node BullMQ {_shown(numbers)}"
        return "a Node BullMQ that records no version" if self.raw is None else repr(self.raw)


def refusal(queue: str, node: NodeBullmq) -> str:
    """The one line that refuses to queue on a queue shared with a too old Node BullMQ."""
    return (
        f"queue {queue} is shared with {node.name}, older than {_shown(OLDEST_SUPPORTED)}, "
        f"whose resume can drop the jobs bullworker queues while it is paused; upgrade "
        f"that service to Node BullMQ {supported_range()}"
    )


def warning(queue: str, node: NodeBullmq) -> str | None:
    """What the runner's start-up log and ``doctor`` say about ``node``; None if all is well."""
    support = node.support
    if support == "old":
        return refusal(queue, node)
    if support in ("legacy", "unrecorded"):
        who = (
            node.name
            if support == "legacy"
            else "a Node BullMQ older than 5.20 (it made a 'paused' list and records no version)"
        )
        return (
            f"queue {queue} is shared with {who}, which keeps a paused queue's jobs in a "
            "separate list: bullworker queues into it safely, but the jobs a bullworker "
            "runner moves to waiting while Node keeps the queue paused (delayed and scheduled "
            "jobs coming due, retries, stalled jobs) are dropped when Node resumes it "
            "('bullworker queues resume' keeps them); upgrade that service to Node BullMQ 6 "
            f"(supported: {supported_range()})"
        )
    if support == "newer":
        return (
            f"queue {queue} is shared with {node.name}, newer than the newest tested "
            f"({_shown(NEWEST_TESTED)}; supported: {supported_range()})"
        )
    if support == "unknown":
        return (
            f"queue {queue}'s meta names {node.raw!r}, not Node BullMQ: bullworker is "
            f"tested with Node BullMQ {supported_range()} only"
        )
    return None


def verdict(queue: str, node: NodeBullmq) -> tuple[Literal["OK", "WARN", "FAIL"], str, str | None]:
    """``doctor``'s level, message and fix for the Node BullMQ sharing ``queue``."""
    problem = warning(queue, node)
    if problem is None:
        seen = node.name if node.raw is not None else "no Node BullMQ recorded a version"
        return "OK", f"queue {queue}: {seen} (safe: {supported_range()})", None
    if node.support == "old":
        return "FAIL", problem, f"upgrade the Node service to BullMQ {supported_range()}"
    return "WARN", problem, "upgrade the Node service to BullMQ 6; resume queues with bullworker"


async def read_node_bullmq(client: Any, prefix: str, queue: str) -> NodeBullmq:
    """What the meta of ``<prefix>:<queue>`` says about Node BullMQ (one round trip)."""
    return await _read(client, f"{prefix}:{queue}:meta", f"{prefix}:{queue}:paused")


async def _read(client: Any, meta_key: str, paused_key: str) -> NodeBullmq:
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(meta_key, "version", "paused")
        pipe.exists(paused_key)
        (version, paused), paused_list = await pipe.execute()
    return NodeBullmq(raw=version, paused=paused is not None, paused_list=bool(paused_list))


async def log_node_versions(
    workers: dict[str, Any], prefix: str, log: logging.Logger, seconds: float
) -> None:
    """Warn (one line each) about the runner's queues shared with a Node BullMQ that is not
    fully safe (see :func:`warning`); never raises: a warning must not stop a start."""
    try:
        async with asyncio.timeout(seconds):
            for queue, worker in workers.items():
                text = warning(queue, await read_node_bullmq(worker.client, prefix, queue))
                if text is not None:
                    log.warning("%s", text)
    except Exception as exc:
        log.debug("could not read the Node BullMQ versions of the queues: %r", exc)


# --- queueing --------------------------------------------------------------------


def _sweep_keys(queue: Any) -> list[str]:
    keys = queue.scripts.keys
    return [keys["wait"], keys["paused"], keys["meta"]]


async def pause_queue(queue: Any, paused: bool) -> None:
    """``queue.pause()`` / ``queue.resume()`` for every Node BullMQ sharing the queue.

    The port pauses as BullMQ 6 does (``meta.paused`` only); on a queue that Node
    5.x shares, the same MULTI then moves the waiting jobs to the ``paused`` list,
    as 5.x pauses, so that a 5.x resume finds them there. The port's resume also
    takes back what is in a ``paused`` list: it is safe as it is.
    """
    if not paused:
        await queue.resume()
        return
    scripts = queue.scripts
    keys = scripts.getKeys(["wait", "paused", "meta", "prioritized", "events", "delayed", "marker"])
    async with queue.client.pipeline(transaction=True) as pipe:
        await scripts.commands["pause"](keys=keys, args=["paused"], client=pipe)
        await queue.client.register_script(_SWEEP)(keys=_sweep_keys(queue), args=[0], client=pipe)
        await pipe.execute()


@dataclass(slots=True)
class _Seen:
    #: Until when (``time.monotonic()``) adds to the queue take the plain path; 0: never.
    plain_until: float
    #: Node 5.x was seen on the queue by this process: every add is guarded from then on
    #: (a 6.x Queue started later rewrites the version, but the 5.x one still runs).
    legacy: bool
    node: NodeBullmq


class PausedLayout:
    """Queues jobs (``Queue.add`` / ``addBulk``) so that a Node BullMQ 5.x resume keeps them.

    One per producer. The first add to a queue reads its meta; after that a queue
    where Node 5.x was seen takes the guarded add, every time; another one takes
    the plain add, and one guarded add every :data:`RECHECK_SECONDS` reads the
    meta again. A queue whose meta names a Node BullMQ older than
    :data:`OLDEST_SUPPORTED` is refused with :class:`NodeBullmqUnsupported`.
    """

    def __init__(self, recheck: float = RECHECK_SECONDS) -> None:
        self.recheck = recheck
        self._seen: dict[str, _Seen] = {}
        self._sweeps: dict[int, Any] = {}

    def node(self, queue: Any) -> NodeBullmq | None:
        """What was last read from ``queue``'s meta (None before its first add)."""
        seen = self._seen.get(queue.qualifiedName)
        return seen.node if seen is not None else None

    def _remember(self, queue: Any, node: NodeBullmq) -> None:
        previous = self._seen.get(queue.qualifiedName)
        legacy = node.legacy_layout or (previous is not None and previous.legacy)
        plain = not legacy and node.support != "old"
        until = time.monotonic() + self.recheck if plain else 0.0
        self._seen[queue.qualifiedName] = _Seen(until, legacy, node)

    def _plain(self, queue: Any) -> bool:
        """The plain add will do (the hot path: a dict look-up and a clock read)."""
        seen = self._seen.get(queue.qualifiedName)
        return seen is not None and time.monotonic() < seen.plain_until

    async def _check(self, queue: Any) -> None:
        """Read the meta before a queue's first add; refuse a too old Node BullMQ."""
        seen = self._seen.get(queue.qualifiedName)
        if seen is None:
            keys = queue.scripts.keys
            self._remember(queue, await _read(queue.client, keys["meta"], keys["paused"]))
            seen = self._seen[queue.qualifiedName]
        if seen.node.support == "old":
            raise NodeBullmqUnsupported(refusal(queue.name, seen.node))

    async def add(self, queue: Any, name: str, data: Any, opts: dict[str, Any]) -> str:
        """``queue.add(name, data, opts)``; returns the job's id."""
        if self._plain(queue):
            return str((await queue.add(name, data, opts)).id)
        await self._check(queue)
        if self._plain(queue):
            return str((await queue.add(name, data, opts)).id)
        [job_id] = await self._add(queue, [(name, data, opts)], guarded=True)
        return job_id

    async def add_bulk(self, queue: Any, entries: list[dict[str, Any]]) -> list[str]:
        """``queue.addBulk(entries)`` (``{"name", "data", "opts"}``); returns the ids in order."""
        if not self._plain(queue):
            await self._check(queue)
        guarded = not self._plain(queue)
        if not guarded and not has_add_lane(queue):  # a cluster client: bullmq's own path
            return [str(job.id) for job in await queue.addBulk(entries)]
        jobs = [(e["name"], e.get("data"), e.get("opts") or {}) for e in entries]
        return await self._add(queue, jobs, guarded=guarded)

    def _sweep(self, queue: Any) -> Any:
        client = queue.client
        sweep = self._sweeps.get(id(client))
        if sweep is None:
            sweep = self._sweeps[id(client)] = client.register_script(_SWEEP)
        return sweep

    async def _add(
        self, queue: Any, jobs: list[tuple[str, Any, dict[str, Any]]], *, guarded: bool = False
    ) -> list[str]:
        """The port's add scripts in one MULTI/EXEC (as ``addBulk`` adds), then
        :data:`_SWEEP` in the same one when ``guarded``."""
        from bullmq import Job

        scripts = queue.scripts
        built = [Job(queue, name, data, {**queue.jobsOpts, **opts}) for name, data, opts in jobs]
        lifo = sum(
            1
            for job in built
            if job.opts.get("lifo") and not job.opts.get("delay") and not job.opts.get("priority")
        )
        sweep = self._sweep(queue) if guarded else None
        if has_add_lane(queue):  # packed by hiredis, sent in one write
            batch = ScriptBatch()
            for job in built:
                await scripts.addJob(job, batch)
            if sweep is not None:
                batch.add(sweep, _sweep_keys(queue), [lifo])
            results = await batch.execute(queue.client)
        else:
            async with queue.client.pipeline(transaction=True) as pipe:
                for job in built:
                    await scripts.addJob(job, pipe)
                if sweep is not None:
                    await sweep(keys=_sweep_keys(queue), args=[lifo], client=pipe)
                results = await pipe.execute()
        if sweep is not None:
            *results, (version, paused, had_list, _moved) = results
            self._remember(
                queue,
                NodeBullmq(raw=version or None, paused=bool(paused), paused_list=bool(had_list)),
            )
        ids = []
        for job, result in zip(built, results, strict=True):
            if isinstance(result, int) and result < 0:
                raise scripts.finishedErrors(
                    {"code": result, "parentKey": job.parentKey, "command": "addJob"}
                )
            job.id = result
            ids.append(str(result))
        return ids
