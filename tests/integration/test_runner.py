"""The runner and WorkerService against real Redis."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import pytest

from bullworker import (
    App,
    AppConfig,
    BaseJob,
    DependencyError,
    JobHook,
    JobRegistry,
    JobRun,
    PayloadError,
    QueueUnavailable,
    UnknownJobError,
    WorkerService,
    create_app,
    worker_job,
)
from tests.helpers import bull_queue, eventually, wait_finished

reg = JobRegistry()


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, subject: str) -> str:
        self.sent.append((to, subject))
        return f"msg-{len(self.sent)}"


class EmailIn(TypedDict):
    to: str
    subject: str


class Seen:
    """Collects what handlers observed (one instance per app)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.release = threading.Event()


@worker_job(registry=reg)
class SendEmailJob(BaseJob[EmailIn, dict[str, str]]):
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def handle(self, data: EmailIn) -> dict[str, str]:
        return {"id": await self.mailer.send(data["to"], data["subject"])}


@worker_job(registry=reg)
class SyncJob(BaseJob[dict[str, int], int]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    def handle(self, data: dict[str, int]) -> int:
        self.seen.items.append((threading.current_thread().name, self))
        return data["n"] * 2


@worker_job(registry=reg)
class FailingJob(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise ValueError("boom")


@worker_job(registry=reg)
class SetResultJob(BaseJob[Any, Any]):
    async def handle(self, data: Any) -> Any:
        return {1, 2}


@worker_job(registry=reg)
class SlowJob(BaseJob[dict[str, float], str]):
    TIMEOUT = 0.3

    async def handle(self, data: dict[str, float]) -> str:
        await asyncio.sleep(data["sleep"])
        return "done"


@worker_job(registry=reg)
class WaitJob(BaseJob[Any, int]):
    """Runs until the test releases it, then counts its runs."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, data: Any) -> int:
        self.seen.items.append("run")
        while not self.seen.release.is_set():
            await asyncio.sleep(0.02)
        return len(self.seen.items)


@worker_job(registry=reg)
class OtherQueueJob(BaseJob[Any, str]):
    QUEUE_NAME = "other"

    async def handle(self, data: Any) -> str:
        return "other"


CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("CURRENT", default="unset")


@worker_job(registry=reg)
class ContextJob(BaseJob[dict[str, bool], str]):
    async def handle(self, data: dict[str, bool]) -> str:
        if data.get("fail"):
            raise KeyError("nope")
        return CURRENT.get()


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
    config = AppConfig(environ={}, bull_prefix=prefix, app_env="production", record_jobs=False)
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


def make_app(prefix: str, *, registry: JobRegistry = reg, **settings: Any) -> App:
    settings.setdefault("record_jobs", False)  # these tests inspect finished jobs in Redis
    config = AppConfig(environ={}, bull_prefix=prefix, app_env="production", **settings)
    return create_app(
        config=config, enable_worker=True, providers=[Mailer, Seen], registry=registry
    )


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
    app = create_app(
        config=AppConfig(environ={"APP_ENV": "test"}, bull_prefix=prefix), registry=reg
    )
    job_id = await app.worker_service.queue_job(SyncJob, {"n": 3}, delay=5)
    assert job_id == "test-1"
    kept = app.worker_service.queued
    assert [(k.name, k.queue, k.data, k.opts) for k in kept] == [
        ("SyncJob", "default", {"n": 3}, {"delay": 5})
    ]
    async with bull_queue("default", prefix) as queue:
        assert sum((await queue.getJobCounts()).values()) == 0


async def test_unreachable_redis_fails_fast_with_a_clear_error(prefix: str) -> None:
    app = make_app(prefix, redis_port=1, redis_timeout=1.0)
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
        config=AppConfig(environ={"APP_ENV": "development"}, bull_prefix=prefix, record_jobs=False),
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
    async with create_app(
        config=AppConfig(environ={}, bull_prefix=prefix), registry=reg
    ) as producer_only:
        assert producer_only.runner is None


async def test_graceful_shutdown_lets_running_jobs_finish(prefix: str) -> None:
    app = make_app(prefix)
    runner = app.create_runner()
    await runner.start()
    job_id = await app.worker_service.queue_job(WaitJob, {})
    seen = app.resolve(Seen)
    await eventually(lambda: seen.items == ["run"])
    threading.Timer(0.3, seen.release.set).start()
    started = time.monotonic()
    await runner.stop(grace=5)
    assert time.monotonic() - started < 3
    async with bull_queue("default", prefix) as queue:
        job = await queue.getJob(job_id)
        assert await job.getState() == "completed"
    await app.stop()


async def test_forced_shutdown_returns_the_job_through_the_stalled_path(prefix: str) -> None:
    settings = {"worker_lock_duration": 1000, "worker_stalled_interval": 500}
    first = make_app(prefix, **settings)
    runner = first.create_runner()
    await runner.start()
    job_id = await first.worker_service.queue_job(WaitJob, {})
    await eventually(lambda: first.resolve(Seen).items == ["run"])
    started = time.monotonic()
    await runner.stop(grace=0.2)  # the job never finishes by itself
    assert time.monotonic() - started < 2
    async with bull_queue("default", prefix) as queue:
        assert await queue.getJobState(job_id) == "active"
        second = make_app(prefix, **settings)
        second.resolve(Seen).release.set()
        rerun = second.create_runner()
        await rerun.start()
        try:
            job = await wait_finished(queue, job_id, timeout=10)
        finally:
            await rerun.stop(grace=1)
            await second.stop()
        assert await job.getState() == "completed"
        assert job.stalledCounter == 1
    await first.stop()


@worker_job(registry=reg)
class CountJob(BaseJob[dict[str, int], int]):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def handle(self, data: dict[str, int]) -> int:
        self.seen.items.append(data["n"])
        await asyncio.sleep(0.001)
        return data["n"]


async def produce_until(stop: asyncio.Event, service: WorkerService) -> None:
    n = 0
    while not stop.is_set():
        await service.queue_job(CountJob, {"n": n})
        n += 1
        await asyncio.sleep(0.002 * (n % 3))


async def test_graceful_stop_finishes_every_job_it_took(prefix: str) -> None:
    # A stop while jobs keep coming catches fetches in flight. Each taken job
    # must run to completion now, not sit active until the stalled check.
    # Without the fix about 4 rounds in 10 left a job active.
    for round_ in range(12):
        round_prefix = f"{prefix}:r{round_}"
        app = make_app(round_prefix, worker_concurrency=4)
        runner = app.create_runner()
        await runner.start()
        stop = asyncio.Event()
        producer = asyncio.create_task(produce_until(stop, app.worker_service))
        await asyncio.sleep(0.05 + 0.01 * round_)
        await runner.stop(grace=5)
        stop.set()
        await producer
        async with bull_queue("default", round_prefix) as queue:
            active = await queue.getJobs(["active"])
            completed = await queue.getJobs(["completed"])
        ran = app.resolve(Seen).items
        await app.stop()
        assert active == [], f"round {round_}: {[j.id for j in active]} left active"
        assert sorted(ran) == sorted(j.data["n"] for j in completed), f"round {round_}"


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


async def test_oversized_payloads_are_refused(prefix: str) -> None:
    app = make_app(prefix, max_payload_bytes=1000)
    with pytest.raises(PayloadError, match="over MAX_PAYLOAD_BYTES=1000"):
        await app.worker_service.queue_job(FailingJob, {"pad": "x" * 1000})
    with pytest.raises(PayloadError, match="over MAX_PAYLOAD_BYTES"):
        await app.worker_service.queue_jobs(FailingJob, [{"n": 1}, {"pad": "x" * 2000}])
    assert await app.worker_service.queue_job(SyncJob, {"n": 1})
    await app.stop()
