"""A bullworker app for the Node interop tests (tests/integration/test_node_interop.py).

It has its own registry, so its job names never clash with other tests. The
config comes from the environment, so ``bullworker start|queue --app
tests.integration.interop_app:app`` subprocesses use the test's ``BULL_PREFIX``,
``BULL_QUEUE`` and ``REDIS_URL``; in-process tests build their own app on ``reg``.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from bullworker import AppConfig, BaseJob, JobRegistry, create_app, worker_job

reg = JobRegistry()

#: Every payload EchoJob received in this process, in order.
RECEIVED: list[Any] = []
#: What EchoJob returned for each of them.
RETURNED: list[Any] = []
#: How many times FailingJob ran in this process.
FAILING_CALLS: list[Any] = []


def echo_result(data: Any, pid: int | None = None) -> dict[str, Any]:
    """What EchoJob returns for ``data`` when run by process ``pid``."""
    return {"echo": data, "by": "python", "pid": os.getpid() if pid is None else pid}


@worker_job(registry=reg)
class EchoJob(BaseJob[Any, dict[str, Any]]):
    """Records its payload and returns it back."""

    async def handle(self, data: Any) -> dict[str, Any]:
        RECEIVED.append(data)
        result = echo_result(data)
        RETURNED.append(result)
        return result


@worker_job(registry=reg)
class FailingJob(BaseJob[Any, None]):
    """Always fails with ``ValueError("python says no")``."""

    async def handle(self, data: Any) -> None:
        FAILING_CALLS.append(data)
        raise ValueError("python says no")


class GreetIn(TypedDict):
    name: str
    times: int


class GreetOut(TypedDict):
    greeting: str


@worker_job(registry=reg)
class GreetJob(BaseJob[GreetIn, GreetOut]):
    """A typed job with a synchronous handler (it runs in the runner's thread pool)."""

    def handle(self, data: GreetIn) -> GreetOut:
        return {"greeting": " ".join([f"hello {data['name']}"] * data["times"])}


app = create_app(config=AppConfig(), enable_worker=True, registry=reg)
