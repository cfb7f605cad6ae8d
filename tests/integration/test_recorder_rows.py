"""A row already in ``_jobs`` for a finished job: its own (removed), or another job's (kept)."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.history.hashes import to_record
from bullworker.history.store import JobStore
from tests.helpers import REDIS_URL
from tests.integration.test_recorder import (
    EchoJob,
    finished_in_redis,
    make_recorder,
    run_jobs,
)

T0 = 1_767_225_600_000  # an explicit job timestamp (ms), as a producer may pass


async def test_a_job_whose_row_exists_already_is_removed(prefix: str, store: JobStore) -> None:
    # A batch that stopped between its insert and its removal leaves both the row
    # and the job: the next batch finds the row is the job's own and removes the job.
    [job_id] = await run_jobs(prefix, [(EchoJob, {"n": 1}, {})])
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        raw = await client.hgetall(keys.job_key(prefix, "default", job_id))
    finally:
        await client.aclose()
    assert await store.insert_records([to_record("default", job_id, "completed", raw)]) == 1
    recorder = make_recorder(prefix, "default", store)
    try:
        assert await recorder.record_batch() == 1
    finally:
        await recorder.redis.aclose()
    assert await finished_in_redis(prefix, "default") == 0
    assert [r.queue_id for r in await store.recent(queue="default")] == [job_id]


async def test_another_job_with_the_same_key_stays_in_redis(
    prefix: str, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A reused id with the same explicit timestamp and attempt as a recorded job:
    # its insert is skipped (the key is taken), so it must not be removed.
    opts = {"jobId": "nightly-report", "timestamp": T0}
    await run_jobs(prefix, [(EchoJob, {"n": 1}, opts)])
    recorder = make_recorder(prefix, "default", store)
    try:
        assert await recorder.record_batch() == 1
        assert await finished_in_redis(prefix, "default") == 0
        await run_jobs(prefix, [(EchoJob, {"n": 2}, opts)])
        with caplog.at_level(logging.ERROR, logger="bullworker.recorder"):
            await recorder.record_batch()
            await recorder.record_batch()
    finally:
        await recorder.redis.aclose()
    [row] = await store.get("default:nightly-report")
    assert row.data == {"n": 1}
    assert await finished_in_redis(prefix, "default") == 1  # the second run, kept
    assert caplog.text.count("cannot be recorded: _jobs already has a row") == 1
