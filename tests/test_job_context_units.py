"""The job context without Redis: run_job's effects, handler signatures, backoffs, jitter, stacks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bullworker import (
    BaseJob,
    ConfigError,
    JobContext,
    JobDefinitionError,
    JobRegistry,
    RateLimited,
    Snooze,
    create_app,
    current_job,
    worker_job,
)
from bullworker.runtime.backoff import Backoffs
from bullworker.runtime.failures import handler_stack
from bullworker.testing import JobEffects, run_job
from bullworker.transport.bullmq_compat.failures import _exponential, _fixed
from tests.helpers import app_config

reg = JobRegistry()


@worker_job(registry=reg)
class Report(BaseJob[dict[str, int], int]):
    async def handle(self, data: dict[str, int], job: JobContext) -> int:
        await job.progress(50)
        await job.log("half way")
        await job.update_data({"n": data["n"] + 1})
        assert current_job() is job
        with pytest.raises(RuntimeError, match="sync handlers"):
            job.log_sync("from the loop")
        return job.attempt


@worker_job(registry=reg)
class SyncReport(BaseJob[Any, str]):
    def handle(self, data: Any, job: JobContext) -> str:
        job.progress_sync({"rows": 3})
        return f"{job.name} {current_job() is job}"


@worker_job(registry=reg)
class Sleepy(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise Snooze(2.5)


@worker_job(registry=reg)
class Limited(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise RateLimited(1)


def app() -> Any:
    return create_app(config=app_config(app_env="test"), registry=reg)


async def test_run_job_collects_what_the_handler_reports() -> None:
    effects = JobEffects()
    assert await run_job(app(), Report, {"n": 1}, attempt=2, attempts=3, effects=effects) == 2
    assert (effects.progress, effects.logs, effects.data) == ([50], ["half way"], [{"n": 2}])


async def test_sync_twins_work_from_the_handlers_thread() -> None:
    effects = JobEffects()
    assert await run_job(app(), SyncReport, {}, effects=effects) == "SyncReport True"
    assert effects.progress == [{"rows": 3}]


async def test_snooze_and_rate_limited_reach_the_caller() -> None:
    effects = JobEffects()
    loop = asyncio.get_running_loop()
    before = loop.time()
    with pytest.raises(Snooze) as snoozed:
        await run_job(app(), Sleepy, {}, effects=effects)
    assert snoozed.value.delay == 2.5 and effects.delayed_until is not None
    assert loop.time() - before < 1
    with pytest.raises(RateLimited):
        await run_job(app(), Limited, {})


def test_current_job_outside_a_job_says_so() -> None:
    with pytest.raises(LookupError, match="outside a running job"):
        current_job()


@pytest.mark.parametrize("delay", [-1, "2", True, float("nan")])
def test_snooze_and_rate_limited_check_their_delay(delay: Any) -> None:
    with pytest.raises(ValueError):
        Snooze(delay)
    with pytest.raises(ValueError):
        RateLimited(delay)
    with pytest.raises(ValueError):
        RateLimited(0)


def test_a_handler_with_too_many_parameters_is_refused() -> None:
    class Odd(BaseJob[Any, None]):
        async def handle(self, data: Any, job: Any, extra: Any) -> None: ...

    with pytest.raises(JobDefinitionError, match=r"\(self, data\) or \(self, data, job\)"):
        JobRegistry().register(Odd)


def test_which_handlers_take_the_context() -> None:
    class One(BaseJob[Any, None]):
        async def handle(self, data: Any) -> None: ...

    class Two(BaseJob[Any, None]):
        def handle(self, data: Any, job: JobContext) -> None: ...

    class Defaulted(BaseJob[Any, None]):
        async def handle(self, data: Any, job: Any = None) -> None: ...

    registry = JobRegistry()
    assert [registry.register(c).takes_context for c in (One, Two, Defaulted)] == [
        False, True, True
    ]  # fmt: skip


def test_backoff_strategy_names_are_checked() -> None:
    with pytest.raises(ConfigError, match="BullMQ's own"):
        Backoffs({"fixed": lambda a, e, j: 1})
    with pytest.raises(ConfigError, match="not callable"):
        Backoffs({"linear": 3})  # type: ignore[dict-item]
    backoffs = Backoffs({"linear": lambda a, e, j: a})
    assert backoffs.unknown({"type": "linear"}) is None
    assert backoffs.unknown({"type": "exponential", "delay": 5}) is None
    reason = backoffs.unknown({"type": "cubic"})
    assert reason is not None and "'cubic'" in reason and "fixed, exponential, linear" in reason


class _Job:
    def __init__(self, backoff: dict[str, Any]) -> None:
        self.opts = {"backoff": backoff}


def test_jitter_spreads_the_delay_as_node_does() -> None:
    fixed = _fixed(1000)
    spread = {fixed(1, "fixed", None, _Job({"jitter": 0.5})) for _ in range(200)}
    assert min(spread) >= 500 and max(spread) <= 1000 and len(spread) > 20
    assert fixed(1, "fixed", None, _Job({})) == 1000
    exponential = _exponential(100)
    assert exponential(3, "exponential", None, _Job({})) == 400
    spread = {exponential(3, "exponential", None, _Job({"jitter": 1})) for _ in range(200)}
    assert min(spread) >= 0 and max(spread) <= 400 and len(spread) > 20


def _inner() -> None:
    raise ValueError("deep")


def test_handler_stack_keeps_user_frames_and_their_causes() -> None:
    try:
        try:
            _inner()
        except ValueError as exc:
            raise RuntimeError("outer") from exc
    except RuntimeError as exc:
        stack = handler_stack(exc)
    assert "_inner" in stack and "ValueError: deep" in stack and "RuntimeError: outer" in stack
    assert "bullworker/runtime" not in stack
