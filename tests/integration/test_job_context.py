"""The job context on a real runner, seen from real Node BullMQ 6.7 (tests/node/produce.mjs).

Progress reaches Node's QueueEvents, log lines Node's getJobLogs (bounded by
keepLogs), a snoozed job runs again without spending an attempt, custom
backoffs and jitter work for Node-produced jobs, and a failure reads in Node
as the handler's error with the handler's own stack.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bullworker import JobContext, Runner, create_app
from bullworker.observe.logs import JobFieldsFilter
from tests.integration import context_app
from tests.integration.context_app import reg
from tests.integration.test_node_interop import NodeScripts, config_for

pytestmark = [pytest.mark.node, pytest.mark.timeout(40)]

#: (attempt, error class, job id, backoff type) of every call of the "linear" strategy.
BACKOFF_CALLS: list[tuple[int, str, str, Any]] = []


def linear(attempt: int, error: BaseException, job: JobContext) -> float:
    BACKOFF_CALLS.append((attempt, type(error).__name__, job.id, job.opts["backoff"]["type"]))
    return attempt * 0.05


@contextlib.asynccontextmanager
async def runner(prefix: str, redis_url: str) -> AsyncIterator[Runner]:
    app = create_app(
        config=config_for(prefix, redis_url),
        enable_worker=True,
        registry=reg,
        backoff_strategies={"linear": linear},
    )
    runner = app.create_runner()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace=5)
        await app.stop()


@pytest.fixture(autouse=True)
def _clear() -> None:
    context_app.SEEN.clear()
    BACKOFF_CALLS.clear()


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(JobFieldsFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_progress_and_log_lines_reach_node(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    collect = Collect()
    logging.getLogger("tests.context_app").addHandler(collect)
    try:
        async with runner(prefix, redis_url):
            [job] = await node.produce(
                {"name": "ReportJob", "data": {"steps": 3}, "opts": {"priority": 5}}
            )
    finally:
        logging.getLogger("tests.context_app").removeHandler(collect)

    assert job["state"] == "completed", job
    assert job["logs"] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert job["progress"] == {"done": 3, "of": 3}
    events = [e["data"] for e in node_progress(job)]
    assert events == [{"done": n, "of": 3} for n in (1, 2, 3)], job
    [run] = context_app.SEEN
    assert run["id"] == job["id"] and run["name"] == "ReportJob" and run["same"]
    assert (run["attempt"], run["attempts"], run["last"], run["priority"]) == (1, 1, True, 5)
    [line] = [r for r in collect.records if r.getMessage() == "reported 3 steps"]
    assert (line.job_id, line.job_name, line.queue) == (job["id"], "ReportJob", "interop")  # type: ignore[attr-defined]


def node_progress(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in job["_events"] if e["jobId"] == job["id"]]


async def test_keep_logs_bounds_the_lines(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce(
            {"name": "ReportJob", "data": {"steps": 5}, "opts": {"keepLogs": 2}}
        )
    assert job["logs"] == ["step 4 of 5", "step 5 of 5"], job


async def test_sync_handler_uses_the_sync_twins(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce({"name": "SyncReportJob", "data": {"steps": 1}})
    assert job["state"] == "completed" and job["returnvalue"] == "synced", job
    assert job["logs"] == ["from a thread"] and job["progress"] == 100
    [run] = context_app.SEEN
    assert run["same"] and run["thread"].startswith("bullworker-job")


async def test_one_parameter_handler_finds_the_context(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce({"name": "OneParamJob", "data": {}})
    assert job["returnvalue"] == "one", job
    assert context_app.SEEN[0]["same"] and context_app.SEEN[0]["id"] == job["id"]


async def test_attempts_and_custom_backoff_from_node(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce(
            {
                "name": "FlakyJob",
                "data": {},
                "opts": {"attempts": 3, "backoff": {"type": "linear", "delay": 1}},
            }
        )
    assert job["state"] == "completed" and job["returnvalue"] == 3, job
    assert [(r["attempt"], r["last"]) for r in context_app.SEEN] == [
        (1, False), (2, False), (3, True)
    ]  # fmt: skip
    assert [
        (1, "RuntimeError", job["id"], "linear"), (2, "RuntimeError", job["id"], "linear")
    ] == BACKOFF_CALLS  # fmt: skip


async def test_unknown_backoff_type_fails_with_one_clear_reason(
    prefix: str, redis_url: str
) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce(
            {"name": "FlakyJob", "data": {}, "opts": {"attempts": 3, "backoff": {"type": "nope"}}}
        )
    assert job["state"] == "failed" and job["attemptsMade"] == 1, job
    reason = job["failedReason"]
    assert reason.startswith("UnknownBackoffError: backoff type 'nope'"), reason
    assert "linear" in reason and "RuntimeError: attempt 1 fails" in reason


async def test_snooze_runs_again_without_spending_an_attempt(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce({"name": "StepJob", "data": {"step": 1}})
    assert job["state"] == "completed" and job["returnvalue"] == 3, job
    assert job["data"] == {"step": 3}
    assert job["attemptsMade"] == 1
    assert [(r["step"], r["attempt"]) for r in context_app.SEEN] == [(1, 1), (2, 1), (3, 1)]


async def test_unrecoverable_error_ends_retries_and_names_its_class(
    prefix: str, redis_url: str
) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce({"name": "GiveUpJob", "data": {}, "opts": {"attempts": 4}})
    assert job["state"] == "failed" and job["attemptsMade"] == 1, job
    assert job["failedReason"] == "UnrecoverableError: the card was declined"
    assert job["outcome"]["error"] == "UnrecoverableError: the card was declined"


async def test_node_sees_the_handlers_stack_not_bullworkers(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with runner(prefix, redis_url):
        [job] = await node.produce({"name": "DeepFailJob", "data": {}})
    assert job["failedReason"] == "KeyError: 'missing-key'", job
    [stack] = job["stacktrace"]
    assert "helper_that_fails" in stack and "context_app.py" in stack, stack
    assert stack.rstrip().endswith("KeyError: 'missing-key'"), stack
    for internal in ("bullworker/runtime", "bullmq/", "asyncio/", "JobFailed", "direct cause"):
        assert internal not in stack, f"{internal!r} in {stack}"
