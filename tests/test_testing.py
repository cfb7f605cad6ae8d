"""bullworker.testing: jobs run inline through the runner's dispatch, with no Redis at all."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TypedDict

import pytest
from pydantic import BaseModel

from bullworker import (
    App,
    BaseJob,
    ConfigError,
    JobFailed,
    JobHook,
    JobRegistry,
    JobRun,
    PayloadError,
    ResultError,
    UnknownJobError,
    WorkerService,
    create_app,
    worker_job,
)
from bullworker.testing import UnrecoverableError, queued, run_job
from tests.helpers import app_config

ROOT = Path(__file__).resolve().parents[1]
#: Nothing listens there: a job that reached for Redis would fail.
CLOSED_REDIS = "redis://127.0.0.1:1/0"

reg = JobRegistry()
current_user: contextvars.ContextVar[str] = contextvars.ContextVar("current_user", default="")


class Name(TypedDict):
    name: str


class Greeting(BaseModel):
    text: str
    length: int


@dataclasses.dataclass
class Size:
    w: int
    h: int


class Greeter:
    def __init__(self) -> None:
        self.greeted: list[str] = []

    def greet(self, name: str) -> str:
        self.greeted.append(name)
        return f"Hello, {name}"


@worker_job(registry=reg)
class EchoJob(BaseJob[Any, Any]):
    async def handle(self, data: Any) -> Any:
        return data


@worker_job(registry=reg)
class GreetJob(BaseJob[Name, Greeting]):
    def __init__(self, greeter: Greeter) -> None:
        self.greeter = greeter

    async def handle(self, data: Name) -> Greeting:
        text = self.greeter.greet(data["name"])
        return Greeting(text=text, length=len(text))


@worker_job(registry=reg)
class AreaJob(BaseJob[Size, int]):
    def handle(self, data: Size) -> int:  # sync: runs in a thread
        assert threading.current_thread() is not threading.main_thread()
        return data.w * data.h


@worker_job(registry=reg)
class FailJob(BaseJob[dict[str, str], None]):
    JOB_OPTIONS = {"attempts": 3}  # noqa: RUF012

    async def handle(self, data: dict[str, str]) -> None:
        raise ValueError(data.get("message", ""))


@worker_job(registry=reg)
class GiveUpJob(BaseJob[Any, None]):
    async def handle(self, data: Any) -> None:
        raise UnrecoverableError("no point retrying")


@worker_job(registry=reg)
class SetJob(BaseJob[Any, Any]):
    async def handle(self, data: Any) -> Any:
        return {1, 2}


@worker_job(registry=reg)
class WrongOutJob(BaseJob[Any, int]):
    async def handle(self, data: Any) -> int:
        return "many"  # type: ignore[return-value]


@worker_job(registry=reg)
class SlowJob(BaseJob[Any, None]):
    TIMEOUT = 0.05

    async def handle(self, data: Any) -> None:
        await asyncio.sleep(5)


@worker_job(registry=reg)
class SignUpJob(BaseJob[Name, str]):
    def __init__(self, worker_service: WorkerService) -> None:
        self.worker_service = worker_service

    async def handle(self, data: Name) -> str:
        await self.worker_service.queue_job(GreetJob, data, delay=1000)
        return await self.worker_service.queue_job(EchoJob, {"user": current_user.get()})


class Recorder(JobHook):
    """Keeps what the hooks saw, and sets a context variable the handler can read."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def job_started(self, run: JobRun) -> None:
        self.events.append(("started", run.name, run.id, run.attempt, run.attempts, run.queue))
        current_user.set(f"user-of-{run.id}")

    def job_finished(
        self,
        run: JobRun,
        outcome: Any,
        error: BaseException | None,
        duration: float,
        *,
        will_retry: bool,
    ) -> None:
        self.events.append(("finished", outcome, type(error).__name__, will_retry))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(recorder: Recorder) -> App:
    return create_app(
        config=app_config(app_env="test", redis_url=CLOSED_REDIS),
        registry=reg,
        providers=[Greeter],
        hooks=[recorder],
        tracing=False,
    )


async def test_a_job_runs_and_returns_its_result(app: App) -> None:
    assert await run_job(app, EchoJob, {"a": [1, 2.5, None]}) == {"a": [1, 2.5, None]}
    assert await run_job(app, EchoJob) == {}  # None is queued as {}
    # The handler gets what Redis would give it, and the caller what a consumer reads back.
    assert await run_job(app, EchoJob, {"t": (1, 2)}) == {"t": [1, 2]}
    assert await run_job(app, "EchoJob", ["by", "name"]) == ["by", "name"]


async def test_typed_results_read_back_as_the_out_type(app: App) -> None:
    greeting = await run_job(app, GreetJob, {"name": "Ada"})
    assert greeting == Greeting(text="Hello, Ada", length=10)
    # A dataclass payload is dumped as queue_job dumps it; the sync handler runs in a thread.
    assert await run_job(app, AreaJob, Size(3, 4)) == 12
    with pytest.raises(ResultError, match=r"WrongOutJob: its result does not read back as int"):
        await run_job(app, WrongOutJob)


async def test_an_invalid_payload_fails_as_on_the_runner(app: App, recorder: Recorder) -> None:
    with pytest.raises(UnrecoverableError, match=r"^PayloadError: GreetJob: invalid payload: name"):
        await run_job(app, GreetJob, {"nom": "Ada"})
    with pytest.raises(UnrecoverableError, match=r"^UnknownJobError: unknown job 'Nope'"):
        await run_job(app, "Nope", {})
    assert recorder.events == []  # like the runner: no hooks for a job that never started
    with pytest.raises(PayloadError, match="set is not JSON"):  # as queue_job refuses it
        await run_job(app, EchoJob, {"s": {1}})
    other = create_app(config=app_config(app_env="test"), registry=JobRegistry())
    with pytest.raises(UnknownJobError):  # not in this app's registry
        await run_job(other, EchoJob)


async def test_a_handler_error_is_job_failed_with_the_reason_and_the_cause(app: App) -> None:
    with pytest.raises(JobFailed) as caught:
        await run_job(app, FailJob, {"message": "boom"})
    assert str(caught.value) == "ValueError: boom"
    assert isinstance(caught.value.__cause__, ValueError)
    assert str(caught.value.__cause__) == "boom"
    with pytest.raises(JobFailed, match=r"^ValueError$"):  # no message: the class alone
        await run_job(app, FailJob, {})
    with pytest.raises(JobFailed, match=r"^JobTimeout: SlowJob ran longer than its TIMEOUT"):
        await run_job(app, SlowJob)
    with pytest.raises(UnrecoverableError, match="no point retrying"):  # not wrapped
        await run_job(app, GiveUpJob)


async def test_a_non_json_result_fails_as_on_the_runner(app: App) -> None:
    with pytest.raises(JobFailed, match=r"^ResultError: SetJob result: set is not JSON"):
        await run_job(app, SetJob)


async def test_dependencies_come_from_the_apps_container(app: App) -> None:
    await run_job(app, GreetJob, {"name": "Ada"})
    await run_job(app, GreetJob, {"name": "Bob"})
    assert app.resolve(Greeter).greeted == ["Ada", "Bob"]  # one provider, a fresh job each run
    bare = create_app(config=app_config(app_env="test"), registry=reg, tracing=False)
    with pytest.raises(JobFailed, match=r"^DependencyError: missing dependency"):
        await run_job(bare, GreetJob, {"name": "Ada"})


async def test_hooks_see_the_run_and_its_outcome(app: App, recorder: Recorder) -> None:
    await run_job(app, EchoJob, {}, job_id="e-1")
    assert recorder.events == [
        ("started", "EchoJob", "e-1", 1, 1, "default"),
        ("finished", "completed", "NoneType", False),
    ]


async def test_attempts_decide_what_hooks_see_and_whether_a_failure_retries(
    app: App, recorder: Recorder
) -> None:
    for attempt in (1, 3):  # JOB_OPTIONS say attempts=3
        with pytest.raises(JobFailed):
            await run_job(app, FailJob, {"message": "x"}, attempt=attempt, job_id="f")
    await run_job(app, EchoJob, attempt=2, attempts=2, job_id="e")
    with pytest.raises(JobFailed):
        await run_job(app, FailJob, {}, opts={"attempts": 1})
    assert recorder.events == [
        ("started", "FailJob", "f", 1, 3, "default"),
        ("finished", "failed", "ValueError", True),
        ("started", "FailJob", "f", 3, 3, "default"),
        ("finished", "failed", "ValueError", False),  # the last attempt
        ("started", "EchoJob", "e", 2, 2, "default"),
        ("finished", "completed", "NoneType", False),
        ("started", "FailJob", recorder.events[-2][2], 1, 1, "default"),
        ("finished", "failed", "ValueError", False),
    ]
    with pytest.raises(ValueError, match="attempt must be 1 to 3"):
        await run_job(app, FailJob, {}, attempt=4)
    with pytest.raises(PayloadError, match="attempts must be"):
        await run_job(app, EchoJob, attempts=0)


async def test_jobs_queued_by_a_handler_are_kept_for_assertions(app: App) -> None:
    kept_id = await run_job(app, SignUpJob, {"name": "Ada"}, job_id="s-1")
    greet, echo = queued(app)
    assert (greet.name, greet.queue, greet.data, greet.opts) == (
        "GreetJob",
        "default",
        {"name": "Ada"},
        {"delay": 1000},
    )
    # The hooks' context variable reached the handler, as on the runner.
    assert (echo.id, echo.data) == (kept_id, {"user": "user-of-s-1"})
    assert queued(app, GreetJob) == [greet]
    assert queued(app, "EchoJob") == [echo]
    assert app.worker_service._queues == {}  # no Queue, so no connection, was opened
    app.worker_service.queued.clear()
    assert queued(app) == []


def test_queued_needs_test_mode() -> None:
    live = create_app(config=app_config(app_env="production"), registry=reg)
    with pytest.raises(ConfigError, match=r"needs an app in test mode \(APP_ENV=test\)"):
        queued(live)


async def test_the_callers_task_is_left_alone(app: App) -> None:
    task = asyncio.current_task()
    assert task is not None
    name = task.get_name()
    current_user.set("caller")
    await run_job(app, EchoJob, {})
    assert (task.get_name(), current_user.get()) == (name, "caller")


def test_the_documented_example_runs_without_redis() -> None:
    """examples/testing/test_shop.py, shown in docs/testing.md, with nothing listening for Redis."""
    env = {**os.environ, "REDIS_URL": CLOSED_REDIS, "APP_ENV": "test"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout


def test_the_docs_show_the_example_as_it_is() -> None:
    """docs/testing.md shows the file (its first line names it), and the README points there."""
    page = (ROOT / "docs" / "testing.md").read_text()
    header = "```python\n# examples/testing/test_shop.py\n"
    assert header in page
    block = page.split(header, 1)[1].split("```", 1)[0]
    assert block in (ROOT / "examples/testing/test_shop.py").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "## Testing your jobs" in readme and "(docs/testing.md)" in readme
