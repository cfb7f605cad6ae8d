"""The recorder's script calls, each with every key it touches declared (Redis Cluster).

Each class is called as a registered script is (``await call(keys=..., args=...)``)
with the keys and arguments its docstring names, and returns what that call
returns; behind it run the scripts of `bullworker.history.scripts` and
`bullworker.history.job_scripts`: a first one finds the jobs with the queue's keys,
a second one gets each job's keys (`job_keys`). A batch costs two round trips (one
when there is nothing to read), plus one more only to drop deduplication keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bullworker.core.keys import JOB_SUBKEY_SUFFIXES, LOGS_SUFFIX
from bullworker.history import job_scripts, scripts
from bullworker.transport.bullmq_compat.wire import call_script

Arg = str | int | float


def job_keys(job_prefix: str, job_id: str) -> list[str]:
    """The `scripts.JOB_STRIDE` keys of a job: its hash, then its sub-keys."""
    job_key = job_prefix + job_id
    return [job_key, *(job_key + suffix for suffix in JOB_SUBKEY_SUFFIXES)]


class DropDedup:
    """`scripts.DROP_DEDUP` for the ``id, deid, ...`` pairs a removal returned."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._drop = client.register_script(scripts.DROP_DEDUP)

    async def __call__(self, dedup_prefix: str, pairs: Sequence[Any]) -> None:
        if pairs:
            ids, deids = [str(i) for i in pairs[::2]], [str(d) for d in pairs[1::2]]
            await call_script(self._client, self._drop, [dedup_prefix + d for d in deids], ids)


class FetchNew:
    """What a recorder batch reads (the reply of `scripts.FETCH_PICK`). KEYS: completed
    set, failed set, event stream. ARGV: job key prefix, batch size, log lines kept, cursor
    ("" for none), scan (1/0), most events read, recorded field, where the scan of the
    completed and of the failed set goes on, most set members a scan looks at."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._ids = client.register_script(scripts.FETCH_IDS)
        self._pick = client.register_script(scripts.FETCH_PICK)

    async def __call__(
        self, *, keys: Sequence[str], args: Sequence[Arg], skip: Sequence[str] = ()
    ) -> str:
        """The batch as JSON; the jobs of ``skip`` (ids) are left out."""
        prefix, limit, keep, cursor, scan, events, field, *resume, budget = args
        head = await call_script(
            self._client, self._ids, keys, [limit, cursor, scan, events, *resume, budget, *skip]
        )
        candidates = [str(v) for v in head[6]]
        found = [str(v) for v in head[:6]] + candidates
        if not candidates:
            cursor, more, gap, scanned, done_completed, done_failed = found[:6]
            scan_from = {"completed": done_completed, "failed": done_failed}
            flags = {"more": more == "1", "gap": gap == "1", "scanned": scanned == "1"}
            return json.dumps(
                {"cursor": cursor, **flags, "resume": scan_from, "jobs": [], "gone": []}
            )
        where: list[str] = []
        for job_id in candidates[2::4]:
            job_key = str(prefix) + job_id
            where += [job_key, job_key + LOGS_SUFFIX]
        return str(await call_script(self._client, self._pick, where, [limit, keep, field, *found]))


class MarkRecorded:
    """After a batch's rows are committed: marks (or removes) its jobs, counts the lost
    ones, stores the cursor; returns ``[marked, removed, lost]``. KEYS: completed set,
    failed set, cursor key, lost-jobs hash. ARGV: job key prefix, dedup prefix, log lines
    kept, cursor ("": unchanged), remove completed at once (1/0), remove failed at once,
    now (ms), recorded field, number of jobs, then per job: status, id, score, finishedOn,
    attempts, log mark; then per gone job: status, id, in_set, lost (1/0)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._mark = client.register_script(scripts.MARK_RECORDED)
        self._drop_dedup = DropDedup(client)

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Arg]) -> list[int]:
        prefix, dedup_prefix, keep, cursor, completed, failed, now, field, n, *rest = args
        count = int(n)
        where = list(keys)
        for j in range(count):
            where += job_keys(str(prefix), str(rest[j * 6 + 1]))
        gone = rest[count * 6 :]
        where += [str(prefix) + str(job_id) for job_id in gone[1::4]]
        reply = await call_script(
            self._client, self._mark, where, [completed, failed, now, field, keep, cursor, n, *rest]
        )
        await self._drop_dedup(str(dedup_prefix), reply[3:])
        return [int(v) for v in reply[:3]]


class TrimKept:
    """Removes the recorded jobs beyond the keep window; returns ``[removed, unmarked]``.
    KEYS: completed set, failed set. ARGV: job key prefix, dedup prefix, log lines kept,
    limit per set, recorded field, then per set (completed, failed): count kept, cutoff
    score ("" for no age bound)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._ids = client.register_script(scripts.TRIM_IDS)
        self._apply = client.register_script(scripts.TRIM_APPLY)
        self._drop_dedup = DropDedup(client)

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Arg]) -> list[int]:
        prefix, dedup_prefix, keep, limit, field, *windows = args
        found = await call_script(self._client, self._ids, keys, [limit, *windows])
        ids = [str(v) for v in found[1]]
        if not ids:
            return [0, 0]
        where = list(keys)
        for job_id in ids:
            where += job_keys(str(prefix), job_id)
        reply = await call_script(self._client, self._apply, where, [keep, field, found[0], *ids])
        await self._drop_dedup(str(dedup_prefix), reply[2:])
        return [int(v) for v in reply[:2]]


class FetchJobs:
    """`job_scripts.FETCH_JOBS` for given ids. KEYS: finished set. ARGV: job key prefix,
    log lines kept, then the job ids. Returns its JSON reply."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._fetch = client.register_script(job_scripts.FETCH_JOBS)

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Arg]) -> str:
        prefix, keep, *ids = args
        where = list(keys)
        for job_id in ids:
            where += job_keys(str(prefix), str(job_id))[:2]
        return str(await call_script(self._client, self._fetch, where, [keep, *ids]))


class RemoveRecorded:
    """Removes recorded jobs that are unchanged; returns how many were removed. KEYS:
    finished set, then per job `job_keys`. ARGV: dedup prefix, log lines kept, then per
    job: id, finishedOn, attempts, log mark."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._remove = client.register_script(job_scripts.REMOVE_RECORDED)
        self._drop_dedup = DropDedup(client)

    async def outcome(self, keys: Sequence[str], args: Sequence[Arg]) -> tuple[int, int]:
        """How many were removed, and the last job's outcome (1 removed, 0 not in the
        set, -1 changed)."""
        dedup_prefix, keep, *jobs = args
        reply = await call_script(self._client, self._remove, keys, [keep, *jobs])
        await self._drop_dedup(str(dedup_prefix), reply[2:])
        return int(reply[0]), int(reply[1])

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Arg]) -> int:
        return (await self.outcome(keys, args))[0]


class RemoveIfUnchanged(RemoveRecorded):
    """Removes one recorded job if it is unchanged: 1 removed, 0 not in the set, -1
    changed. KEYS: finished set, job hash. ARGV: job id, finishedOn, attempts, log mark,
    dedup prefix, log lines kept."""

    async def __call__(self, *, keys: Sequence[str], args: Sequence[Arg]) -> int:
        set_key, job_key = keys[:2]
        job_id, finished, attempts, mark, dedup_prefix, keep = args
        where = [set_key, *job_keys(str(job_key), "")]
        return (await self.outcome(where, [dedup_prefix, keep, job_id, finished, attempts, mark]))[
            1
        ]


async def recording_backlog_counts(
    client: Any, sets: Sequence[str], job_prefix: str, field: str, cap: int
) -> list[str | int]:
    """Per finished set, how many jobs are not recorded for their current run and the
    score of the oldest: ``[n completed, oldest, n failed, oldest]`` ("" when none). The
    oldest ``cap`` members of each set are looked at; newer ones count as not recorded."""
    head = await client.register_script(job_scripts.UNRECORDED_IDS)(keys=sets, args=[cap])
    (n_completed, beyond_completed, oldest_completed, _, beyond_failed, oldest_failed) = head[:6]
    members = [str(v) for v in head[6:]]
    counts: list[Any] = [0, "", 0, ""]
    if members:
        ids, scores = members[::2], members[1::2]
        counts = await client.register_script(job_scripts.UNRECORDED_COUNT)(
            keys=[job_prefix + job_id for job_id in ids], args=[field, n_completed, *scores]
        )
    found: list[str | int] = []
    for (count, oldest), beyond, oldest_beyond in (
        ((counts[0], counts[1]), beyond_completed, oldest_completed),
        ((counts[2], counts[3]), beyond_failed, oldest_failed),
    ):
        found += [int(count) + int(beyond), str(oldest) or str(oldest_beyond)]
    return found
