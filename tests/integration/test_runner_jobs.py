"""The runner against real Redis: how jobs run, fail, retry and time out, and job hooks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bullworker import App, JobHook, JobRun, WorkerService, create_app
from tests.helpers import app_config, bull_queue, eventually, wait_finished
from tests.integration.runner_support import (
    CURRENT,
    ContextJob,
    FailingJob,
    Mailer,
    OtherQueueJob,
    Seen,
    SendEmailJob,
    SetResultJob,
    SlowJob,
    SyncJob,
    make_app,
    reg,
)


class RecordingHook(JobHook):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def job_started(self, run: JobRun) -> None:
        CURRENT.set(f"{run.name}:{run.id}:{run.attempt}")
        self.events.append(("started", run.name, run.attempt, run.attempts))

    def job_finished(
        self,
        run: JobRun,
        outcome: str,
        error: BaseException | None,
        duration: float,
        *,
        will_retry: bool,
    ) -> None:
        self.events.append(
            ("finished", outcome, type(error).__name__ if error else None, will_retry)
        )
        assert duration >= 0


class BrokenHook(JobHook):
    def job_started(self, run: JobRun) -> None:
        raise RuntimeError("hook bug")


async def test_hooks_see_every_run_and_cannot_break_jobs(prefix: str) -> None:
    hook = RecordingHook()
    config = app_config(bull_prefix=prefix, app_env="production", record_jobs=False)
    app = create_app(config=config, enable_worker=True, registry=reg, providers=[Mailer, Seen],
                     hooks=[BrokenHook(), hook])  # fmt: skip
    runner = app.create_runner()
    await runner.start()
    try:
        ok = await app.worker_service.queue_job(ContextJob, {})
        bad = await app.worker_service.queue_job(ContextJob, {"fail": True}, attempts=2, backoff=10)
        async with bull_queue("default", prefix) as queue:
            assert (await wait_finished(queue, ok)).returnvalue == f"ContextJob:{ok}:1"
            assert (await wait_finished(queue, bad)).attemptsMade == 2
    finally:
        await runner.stop(grace=1)
        await app.stop()
    assert hook.events.count(("started", "ContextJob", 1, 1)) == 1
    assert ("finished", "completed", None, False) in hook.events
    assert ("finished", "failed", "KeyError", True) in hook.events
    assert ("finished", "failed", "KeyError", False) in hook.events


@pytest.fixture
async def app(prefix: str) -> AsyncIterator[App]:
    application = make_app(prefix, shutdown_grace=2.0)
    runner = application.create_runner()
    await runner.start()
    application.runner = runner
    yield application
    await application.stop()


async def test_queue_job_runs_with_injected_dependency(app: App, prefix: str) -> None:
    service = app.resolve(WorkerService)
    job_id = await service.queue_job(SendEmailJob, {"to": "a@b.c", "subject": "Hi"})
    assert isinstance(job_id, str)
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, job_id)
        assert job.name == "SendEmailJob"
        assert job.data == {"to": "a@b.c", "subject": "Hi"}
        assert job.returnvalue == {"id": "msg-1"}
    assert app.resolve(Mailer).sent == [("a@b.c", "Hi")]


async def test_sync_handler_runs_in_a_thread_with_a_fresh_instance_per_job(
    app: App, prefix: str
) -> None:
    ids = await app.worker_service.queue_jobs(SyncJob, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert len(ids) == 3
    async with bull_queue("default", prefix) as queue:
        results = [(await wait_finished(queue, i)).returnvalue for i in ids]
    assert results == [2, 4, 6]
    seen = app.resolve(Seen).items
    assert all(name.startswith("bullworker-job") for name, _ in seen)
    assert len({id(instance) for _, instance in seen}) == 3  # instances kept alive in `seen`


async def test_unknown_job_name_fails_without_retries_and_runner_goes_on(
    app: App, prefix: str
) -> None:
    async with bull_queue("default", prefix) as queue:
        unknown = await queue.add("NoSuchJob", {"x": 1}, {"attempts": 3})
        job = await wait_finished(queue, unknown.id)
        assert job.attemptsMade == 1
        assert "unknown job 'NoSuchJob'" in job.failedReason
        assert "SendEmailJob" in job.failedReason
        good = await app.worker_service.queue_job(SyncJob, {"n": 5})
        assert (await wait_finished(queue, good)).returnvalue == 10


async def test_invalid_payload_from_another_producer_fails_at_once(app: App, prefix: str) -> None:
    async with bull_queue("default", prefix) as queue:
        added = await queue.add("SendEmailJob", {"to": "a@b.c"}, {"attempts": 3})
        job = await wait_finished(queue, added.id)
    assert job.attemptsMade == 1
    assert "subject: Field required" in job.failedReason


async def test_handler_error_is_retried_and_reason_names_the_exception(
    app: App, prefix: str
) -> None:
    job_id = await app.worker_service.queue_job(
        FailingJob, {}, attempts=2, backoff={"type": "fixed", "delay": 10}
    )
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, job_id)
    assert job.failedReason == "ValueError: boom"
    assert job.attemptsMade == 2
    assert any("ValueError: boom" in trace for trace in job.stacktrace)


async def test_unknown_backoff_type_fails_instead_of_sticking(app: App, prefix: str) -> None:
    async with bull_queue("default", prefix) as queue:
        added = await queue.add(
            "FailingJob", {}, {"attempts": 3, "backoff": {"type": "mybackoff", "delay": 5}}
        )
        job = await wait_finished(queue, added.id, timeout=5)
    assert await job.getState() == "failed"
    assert job.attemptsMade == 1


async def test_non_json_result_fails_clearly(app: App, prefix: str) -> None:
    job_id = await app.worker_service.queue_job(SetResultJob, {})
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, job_id)
    assert "ResultError" in job.failedReason
    assert "not JSON" in job.failedReason


async def test_timeout_fails_the_run(app: App, prefix: str) -> None:
    job_id = await app.worker_service.queue_job(SlowJob, {"sleep": 5.0})
    fast = await app.worker_service.queue_job(SlowJob, {"sleep": 0.0})
    async with bull_queue("default", prefix) as queue:
        job = await wait_finished(queue, job_id)
        assert job.failedReason.startswith("JobTimeout: SlowJob ran longer than its TIMEOUT")
        assert (await wait_finished(queue, fast)).returnvalue == "done"


async def test_delay_is_honoured(app: App, prefix: str) -> None:
    started = time.time()
    job_id = await app.worker_service.queue_job(SyncJob, {"n": 1}, delay=700)
    async with bull_queue("default", prefix) as queue:
        assert await queue.getJobState(job_id) == "delayed"
        job = await wait_finished(queue, job_id)
    assert job.processedOn / 1000 - started >= 0.65


async def test_each_queue_gets_its_own_worker(app: App, prefix: str) -> None:
    assert app.runner is not None
    assert sorted(app.runner.workers) == ["default", "other"]
    job_id = await app.worker_service.queue_job(OtherQueueJob)
    async with bull_queue("other", prefix) as queue:
        job = await wait_finished(queue, job_id)
    assert job.data == {}
    assert job.returnvalue == "other"


async def test_malformed_job_hashes_fail_at_once_and_hurt_nothing(
    app: App, prefix: str, redis_client: Any
) -> None:
    base = f"{prefix}:default"
    await redis_client.hset(
        f"{base}:bad1", mapping={"name": "SyncJob", "data": "{nope", "opts": "{}"}
    )
    await redis_client.hset(f"{base}:bad2", mapping={"name": "SyncJob", "data": "{}", "opts": "[["})
    await redis_client.lpush(f"{base}:wait", "bad1", "bad2")
    await redis_client.zadd(f"{base}:marker", {"0": 0})
    good = await app.worker_service.queue_job(SyncJob, {"n": 4})
    async with bull_queue("default", prefix) as queue:
        assert (await wait_finished(queue, good)).returnvalue == 8
        for bad in ("bad1", "bad2"):

            async def failed(job_id: str = bad) -> bool:
                return bool(await queue.getJobState(job_id) == "failed")

            await eventually(failed, timeout=5)
            reason = await redis_client.hget(f"{base}:{bad}", "failedReason")
            assert reason.startswith(f"MalformedJobError: job {bad} cannot be read")
