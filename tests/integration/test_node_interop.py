"""Wire compatibility with Node BullMQ (the scripts and lockfile are in tests/node).

Node produces for the bullworker runner and consumes what bullworker queues
(from Python and from the CLI); results, failures and retries are read on the
other side. The main ones run against the oldest and the newest Node BullMQ
that share queues safely (`NODE_RANGE`), the others against the newest. Setup:
``npm ci --prefix tests/node``. Without it these tests fail (they never skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bullworker import AppConfig, Runner, create_app, open_store
from tests import helpers
from tests.integration import interop_app
from tests.integration.interop_app import EchoJob, echo_result, reg

pytestmark = [pytest.mark.node, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
APP_SPEC = "tests.integration.interop_app:app"
QUEUE = "interop"

#: The Node BullMQ packages of tests/node/package.json (npm aliases; see tests/node/bullmq.mjs):
#: the newest tested (6.7.0), the newest 5.x (5.81.5) and the oldest supported (5.20.0).
NEWEST = "bullmq"
NEWEST_5 = "bullmq5"
OLDEST = "bullmq5-oldest"
#: A test over the oldest and the newest Node BullMQ that share queues safely.
NODE_RANGE = pytest.mark.parametrize("node_package", [OLDEST, NEWEST])

#: Everything JSON can carry that Node and Python must agree on. No whole
#: floats (Node writes 1.0 as 1) and no integers beyond 2^53.
PAYLOAD: dict[str, Any] = {
    "text": "héllo wörld, é and É",
    "emoji": "🚀🐍 👍🏽 👨‍👩‍👧",
    "separators": "line\u2028para\u2029end",
    "nul": "before\u0000after",
    "controls": "\t\n\r\b\f\x01\x1f\x7f",
    "quotes": 'she said "hi" \\ and </script>',
    "🔑 clé": "unicode key",
    "": "empty key",
    "deep": {"a": {"b": {"c": {"d": {"e": {"f": [1, [2, [3, {"g": None}]]]}}}}}},
    "deeper": [[[[[[[[[[["ten levels"]]]]]]]]]]],
    "list": [1, "two", 3.5, None, True, False, [], {}],
    "numbers": {
        "int": 42,
        "negative": -17,
        "zero": 0,
        "float": 3.14159,
        "negative_float": -0.001,
        "large_float": 6.02e23,
        "small_float": 1e-7,
        "max_safe": 2**53 - 1,
        "min_safe": -(2**53 - 1),
    },
    "booleans": [True, False],
    "null": None,
}


def same_json(actual: Any, expected: Any) -> bool:
    """Equal as JSON: unlike ``==``, ``True`` is not ``1`` and ``1.0`` is not ``1``."""
    return json.dumps(actual, sort_keys=True) == json.dumps(expected, sort_keys=True)


def bullworker_bin() -> str:
    beside = Path(sys.executable).with_name("bullworker")
    if beside.is_file():
        return str(beside)
    found = shutil.which("bullworker")
    if found is None:
        pytest.fail("the bullworker console script is not installed (pip install -e .)")
    return found


def config_for(prefix: str, redis_url: str) -> AppConfig:
    """In-process config. Recording is off: finished jobs must stay in Redis so
    that Node can read their state, attemptsMade and failedReason afterwards."""
    return helpers.app_config(
        bull_prefix=prefix,
        bull_queue=QUEUE,
        redis_url=redis_url,
        app_env="production",
        record_jobs=False,
    )


def subprocess_env(prefix: str, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of a ``bullworker`` subprocess: the test's settings only.

    Every variable AppConfig reads (and every ``BULLWORKER_*``) is dropped from the inherited
    environment, then the prefix, queue, Redis URL and ``settings`` (``SQLITE_PATH=...``) are set.
    """
    base = {"BULL_PREFIX": prefix, "BULL_QUEUE": QUEUE, "REDIS_URL": redis_url}
    return helpers.bullworker_env(**{**base, "APP_ENV": "production", **settings})


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill a subprocess that is still running and wait for it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def last_line(output: bytes) -> str:
    # Not splitlines(): it would also split at U+2028 inside the JSON.
    lines = [line for line in output.decode().split("\n") if line.strip()]
    return lines[-1] if lines else ""


class NodeScripts:
    """Runs the scripts of tests/node against this test's prefix and queue."""

    def __init__(self, prefix: str, redis_url: str, package: str = NEWEST) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH: the Node interop tests need Node.js 20+")
        manifest = NODE_DIR / "node_modules" / package / "package.json"
        if not manifest.is_file():
            pytest.fail(
                f"{manifest} is missing: run `npm ci --prefix tests/node` "
                "before the Node interop tests",
                pytrace=False,
            )
        self.node = node
        #: The Node BullMQ the scripts run (an npm alias of tests/node) and its version.
        self.package = package
        self.version: str = json.loads(manifest.read_text())["version"]
        self.env = {**helpers.node_env(prefix, QUEUE, redis_url), "BULLMQ_PACKAGE": package}

    async def run(self, script: str, spec: dict[str, Any], timeout: float = 15.0) -> Any:
        """Run one script; return the JSON line it printed (fail on a non-zero exit)."""
        proc = await asyncio.create_subprocess_exec(
            self.node,
            script,
            json.dumps(spec),
            cwd=NODE_DIR,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            pytest.fail(f"node {script} did not exit within {timeout:g} s")
        finally:
            await reap(proc)
        if proc.returncode != 0:
            pytest.fail(
                f"node {script} exited with status {proc.returncode}\n"
                f"stdout: {out.decode()}\nstderr: {err.decode()}"
            )
        line = last_line(out)
        if not line:
            pytest.fail(f"node {script} printed nothing\nstderr: {err.decode()}")
        return json.loads(line)

    async def produce(
        self, *jobs: dict[str, Any], wait: bool = True, wait_ms: int = 8000
    ) -> list[dict[str, Any]]:
        """Add ``{"name", "data", "opts"}`` jobs from Node; by default wait for them."""
        spec = {"jobs": list(jobs), "wait": wait, "waitMs": wait_ms, "deadlineMs": wait_ms + 4000}
        result = await self.run("produce.mjs", spec, timeout=wait_ms / 1000 + 8)
        assert len(result["jobs"]) == len(jobs), result
        for job in result["jobs"]:  # the progress events QueueEvents saw meanwhile
            job["_events"] = result.get("progressEvents", [])
        return result["jobs"]  # type: ignore[no-any-return]

    async def consume(self, count: int = 1, deadline_ms: int = 10_000) -> list[dict[str, Any]]:
        """Let a Node worker process ``count`` jobs; return what it saw and returned."""
        spec = {"count": count, "deadlineMs": deadline_ms}
        result = await self.run("consume.mjs", spec, timeout=deadline_ms / 1000 + 5)
        assert result["failed"] == [], result
        return result["jobs"]  # type: ignore[no-any-return]

    async def control(self, action: str, *jobs: dict[str, Any]) -> dict[str, Any]:
        """``pause``, ``resume`` or ``add`` (``jobs``) with a Node Queue; returns
        ``{"version", "meta", "paused", "ids"}`` (tests/node/queue_control.mjs)."""
        result = await self.run("queue_control.mjs", {"action": action, "jobs": list(jobs)})
        assert result["version"] == self.version, result
        return result  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def python_runner(prefix: str, redis_url: str) -> AsyncIterator[Runner]:
    """The interop app's runner, in this process, consuming the test's queue."""
    app = create_app(config=config_for(prefix, redis_url), enable_worker=True, registry=reg)
    runner = app.create_runner()
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace=5)
        await app.stop()


@contextlib.asynccontextmanager
async def bull_queue(prefix: str, redis_url: str) -> AsyncIterator[Any]:
    """A plain bullmq (Python) Queue on the test's queue, for reading jobs back."""
    async with helpers.bull_queue(QUEUE, prefix, redis_url) as queue:
        yield queue


@pytest.fixture(autouse=True)
def _clear_records() -> None:
    interop_app.RECEIVED.clear()
    interop_app.RETURNED.clear()
    interop_app.FAILING_CALLS.clear()


@NODE_RANGE
async def test_node_job_runs_in_python_with_data_intact(
    prefix: str, redis_url: str, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    async with python_runner(prefix, redis_url):
        [job] = await node.produce({"name": "EchoJob", "data": PAYLOAD})

    assert job["state"] == "completed", job
    assert job["name"] == "EchoJob"
    assert len(interop_app.RECEIVED) == 1, interop_app.RECEIVED
    assert same_json(interop_app.RECEIVED[0], PAYLOAD), interop_app.RECEIVED[0]
    [expected] = interop_app.RETURNED
    assert same_json(expected, echo_result(PAYLOAD))
    assert job["outcome"]["resolved"] is True, job["outcome"]
    assert same_json(job["outcome"]["value"], expected), job["outcome"]
    assert same_json(job["returnvalue"], expected), job["returnvalue"]
    assert job["attemptsMade"] == 1


@NODE_RANGE
async def test_python_queue_job_consumed_by_node(
    prefix: str, redis_url: str, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    app = create_app(config=config_for(prefix, redis_url), registry=reg)
    try:
        job_id = await app.worker_service.queue_job(EchoJob, PAYLOAD)
    finally:
        await app.stop()

    [seen] = await node.consume(1)
    assert seen["id"] == job_id
    assert seen["name"] == "EchoJob"
    assert same_json(seen["data"], PAYLOAD), seen["data"]

    async with bull_queue(prefix, redis_url) as queue:
        job = await queue.getJob(job_id)
        state = await queue.getJobState(job_id)
    assert state == "completed"
    assert job is not None
    assert job.name == "EchoJob"
    assert same_json(job.returnvalue, seen["returned"]), job.returnvalue
    assert same_json(job.returnvalue["echo"], PAYLOAD)


async def test_cli_queue_consumed_by_node(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    proc = await asyncio.create_subprocess_exec(
        bullworker_bin(),
        "queue",
        "EchoJob",
        "--data",
        json.dumps(PAYLOAD, ensure_ascii=False),
        "--app",
        APP_SPEC,
        cwd=ROOT,
        env=subprocess_env(prefix, redis_url),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        await reap(proc)
    assert proc.returncode == 0, f"stdout: {out.decode()}\nstderr: {err.decode()}"
    queue_name, _, job_id = last_line(out).strip().partition(":")  # <queue>:<id>
    assert queue_name and job_id, f"no job id printed\nstderr: {err.decode()}"

    [seen] = await node.consume(1)
    assert seen["id"] == job_id
    assert seen["name"] == "EchoJob"
    assert same_json(seen["data"], PAYLOAD), seen["data"]


@NODE_RANGE
async def test_python_failure_seen_by_node(prefix: str, redis_url: str, node_package: str) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    async with python_runner(prefix, redis_url):
        [job] = await node.produce(
            {
                "name": "FailingJob",
                "data": {"n": 1},
                "opts": {"attempts": 2, "backoff": {"type": "fixed", "delay": 10}},
            }
        )

    assert job["outcome"]["resolved"] is False, job["outcome"]
    assert "ValueError: python says no" in job["outcome"]["error"]
    assert job["state"] == "failed", job
    assert "ValueError: python says no" in job["failedReason"]
    assert job["attemptsMade"] == 2
    assert len(interop_app.FAILING_CALLS) == 2


@NODE_RANGE
async def test_unknown_job_name_fails_without_retry(
    prefix: str, redis_url: str, node_package: str
) -> None:
    node = NodeScripts(prefix, redis_url, node_package)
    async with python_runner(prefix, redis_url) as runner:
        [unknown] = await node.produce(
            {
                "name": "NoSuchJob",
                "data": {"x": 1},
                "opts": {"attempts": 3, "backoff": {"type": "fixed", "delay": 10}},
            }
        )
        [after] = await node.produce({"name": "EchoJob", "data": {"after": "unknown"}})
        assert runner.running

    assert unknown["state"] == "failed", unknown
    assert "NoSuchJob" in unknown["outcome"]["error"], unknown["outcome"]
    assert unknown["attemptsMade"] == 1
    reason = unknown["failedReason"]
    assert "NoSuchJob" in reason
    for name in reg.names():
        assert name in reason, f"{name} missing from {reason!r}"
    assert after["state"] == "completed", after
    assert same_json(after["returnvalue"], echo_result({"after": "unknown"}))


async def test_unknown_backoff_type_fails_instead_of_sticking(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    started = time.monotonic()
    async with python_runner(prefix, redis_url):
        [job] = await node.produce(
            {
                "name": "FailingJob",
                "data": {},
                "opts": {"attempts": 3, "backoff": {"type": "mybackoff"}},
            },
            wait_ms=5000,
        )
    elapsed = time.monotonic() - started

    assert job["state"] == "failed", f"job is {job['state']!r}, not failed: {job}"
    assert job["outcome"]["resolved"] is False
    assert "ValueError: python says no" in job["outcome"]["error"], job["outcome"]
    assert "ValueError: python says no" in job["failedReason"]
    assert job["attemptsMade"] == 1
    assert len(interop_app.FAILING_CALLS) == 1
    assert elapsed < 8, f"took {elapsed:.1f} s"


async def test_typed_job_from_node_validates_payload(prefix: str, redis_url: str) -> None:
    node = NodeScripts(prefix, redis_url)
    async with python_runner(prefix, redis_url):
        good, bad = await node.produce(
            {"name": "GreetJob", "data": {"name": "Zoë 🐍", "times": 2}},
            {"name": "GreetJob", "data": {"name": "Zoë"}, "opts": {"attempts": 3}},
        )

    assert good["state"] == "completed", good
    assert good["returnvalue"] == {"greeting": "hello Zoë 🐍 hello Zoë 🐍"}
    assert bad["state"] == "failed", bad
    assert bad["attemptsMade"] == 1
    assert "PayloadError" in bad["failedReason"]
    assert "times" in bad["failedReason"]


async def test_bullworker_start_runs_node_job_and_stops_on_sigterm(
    prefix: str, redis_url: str, tmp_path: Path
) -> None:
    node = NodeScripts(prefix, redis_url)
    log_path = tmp_path / "bullworker-start.log"
    # The default config: finished jobs are recorded (in a SQLite file of this
    # test) and kept in Redis for the keep window: Node's waitUntilFinished gets
    # the result, and getJob / getJobState still find the job right after.
    env = subprocess_env(prefix, redis_url, SQLITE_PATH=str(tmp_path / "jobs.sqlite3"))
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            bullworker_bin(),
            "start",
            "--app",
            APP_SPEC,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
    exited = asyncio.ensure_future(proc.wait())
    produced = asyncio.ensure_future(
        node.produce({"name": "EchoJob", "data": PAYLOAD}, wait_ms=10_000)
    )
    try:
        await asyncio.wait({exited, produced}, return_when=asyncio.FIRST_COMPLETED)
        if not produced.done():
            pytest.fail(f"bullworker start exited early:\n{log_path.read_text()}")
        [job] = produced.result()
        log = log_path.read_text()
        assert proc.returncode is None, f"bullworker start exited early:\n{log}"
        assert job["outcome"]["resolved"] is True, f"{job}\n{log}"
        assert same_json(job["outcome"]["value"], echo_result(PAYLOAD, pid=proc.pid)), job
        assert job["state"] == "completed", job
        assert same_json(job["returnvalue"], job["outcome"]["value"]), job

        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = await asyncio.wait_for(asyncio.shield(exited), 8)
        except TimeoutError:
            pytest.fail(f"bullworker start ignored SIGTERM for 8 s:\n{log_path.read_text()}")
        elapsed = time.monotonic() - signalled
        log = log_path.read_text()
        assert code == 0, f"exit status {code}:\n{log}"
        assert elapsed < 5, f"took {elapsed:.1f} s to stop:\n{log}"
        assert "Traceback" not in log, log
        async with open_store(None, sqlite_path=str(tmp_path / "jobs.sqlite3")) as store:
            [row] = await store.get(f"{QUEUE}:{job['id']}")  # recorded before the exit
        assert same_json(row.result, job["returnvalue"]), row.result
    finally:
        produced.cancel()
        await reap(proc)
        await asyncio.gather(produced, exited, return_exceptions=True)
