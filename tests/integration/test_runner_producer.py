"""WorkerService and the app: producer-side checks, test mode, outages, runner start."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bullworker import (
    BaseJob,
    DependencyError,
    JobRegistry,
    PayloadError,
    QueueUnavailable,
    UnknownJobError,
    create_app,
    worker_job,
)
from tests.helpers import app_config, bull_queue
from tests.integration.runner_support import (
    FailingJob,
    Mailer,
    Seen,
    SendEmailJob,
    SyncJob,
    make_app,
    reg,
)


async def test_producer_side_validation_never_reaches_redis(prefix: str) -> None:
    app = make_app(prefix)
    service = app.worker_service
    with pytest.raises(PayloadError, match="subject: Field required"):
        await service.queue_job(SendEmailJob, {"to": "x"})
    with pytest.raises(PayloadError, match="cannot be an integer"):
        await service.queue_job(SyncJob, {"n": 1}, jobId="42")
    with pytest.raises(UnknownJobError):

        class NotRegistered(BaseJob[Any, Any]):
            async def handle(self, data: Any) -> None: ...

        await service.queue_job(NotRegistered, {})
    async with bull_queue("default", prefix) as queue:
        counts = await queue.getJobCounts()
    assert sum(counts.values()) == 0
    await app.stop()


async def test_test_mode_keeps_jobs_instead_of_queueing(prefix: str) -> None:
    app = create_app(config=app_config(app_env="test", bull_prefix=prefix), registry=reg)
    job_id = await app.worker_service.queue_job(SyncJob, {"n": 3}, delay=5)
    assert job_id == "test-1"
    kept = app.worker_service.queued
    assert [(k.name, k.queue, k.data, k.opts) for k in kept] == [
        ("SyncJob", "default", {"n": 3}, {"delay": 5})
    ]
    async with bull_queue("default", prefix) as queue:
        assert sum((await queue.getJobCounts()).values()) == 0


async def test_unreachable_redis_fails_fast_with_a_clear_error(prefix: str) -> None:
    app = make_app(prefix, redis_url="redis://127.0.0.1:1/0", redis_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match=r"redis://127.0.0.1:1/0 did not answer within 1 s"):
        await app.worker_service.queue_job(SyncJob, {"n": 1})
    assert time.monotonic() - started < 5
    await app.stop()


async def test_missing_dependency_is_reported_when_the_runner_starts(prefix: str) -> None:
    local = JobRegistry()

    class Unprovided:
        pass

    @worker_job(registry=local)
    class NeedsIt(BaseJob[Any, Any]):
        def __init__(self, dep: Unprovided) -> None:
            self.dep = dep

        async def handle(self, data: Any) -> None: ...

    app = make_app(prefix, registry=local)
    with pytest.raises(DependencyError, match="NeedsIt"):
        await app.create_runner().start()


async def test_app_context_starts_the_runner_only_where_it_should(prefix: str) -> None:
    async with create_app(
        config=app_config(app_env="development", bull_prefix=prefix, record_jobs=False),
        enable_worker=True,
        providers=[Mailer, Seen],
        registry=reg,
    ) as dev:
        assert dev.runner is not None and dev.runner.running
    assert dev.runner is None
    async with make_app(prefix) as prod:
        assert prod.runner is None
    async with make_app(prefix, enable_job_runner=True) as enabled:
        assert enabled.runner is not None
    async with create_app(config=app_config(bull_prefix=prefix), registry=reg) as producer_only:
        assert producer_only.runner is None


async def test_oversized_payloads_are_refused(prefix: str) -> None:
    app = make_app(prefix, max_payload_bytes=1000)
    with pytest.raises(PayloadError, match="over MAX_PAYLOAD_BYTES=1000"):
        await app.worker_service.queue_job(FailingJob, {"pad": "x" * 1000})
    with pytest.raises(PayloadError, match="over MAX_PAYLOAD_BYTES"):
        await app.worker_service.queue_jobs(FailingJob, [{"n": 1}, {"pad": "x" * 2000}])
    assert await app.worker_service.queue_job(SyncJob, {"n": 1})
    await app.stop()
