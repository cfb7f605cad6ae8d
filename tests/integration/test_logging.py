"""What ``bullworker start`` logs: the start and stop lines, LOG_LEVEL and LOG_FORMAT=json."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from bullworker import App, create_app
from bullworker.core.version import __version__
from tests.helpers import PG_DSN, app_config, bull_queue, bullworker_env, eventually, wait_finished
from tests.integration import logging_app
from tests.integration.logging_app import Fail, LogAsync, LogSync, Sleep

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.logging_app:app"


class Worker:
    """A ``bullworker start`` process whose output (stdout and stderr) goes to a file."""

    def __init__(self, log: Path, env: dict[str, str], *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bullworker", "start", "--app", APP, *args],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text()

    def line(self, phrase: str) -> str:
        [found] = [line for line in self.text().splitlines() if phrase in line]
        return found

    async def wait_for(self, phrase: str, timeout: float = 20) -> str:
        await eventually(lambda: phrase in self.text() or self.proc.poll() is not None, timeout)
        assert phrase in self.text(), self.text()
        return self.line(phrase)

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 20)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Any]:
    """Start workers of the logging app (each killed at the end if still running)."""
    started: list[Worker] = []

    def start(env: dict[str, str], *args: str) -> Worker:
        worker = Worker(tmp_path / f"worker{len(started)}.log", env, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
async def producer(prefix: str) -> AsyncIterator[App]:
    app = create_app(config=app_config(bull_prefix=prefix), registry=logging_app.registry)
    yield app
    await app.stop()


def env_for(prefix: str, **settings: str) -> dict[str, str]:
    return bullworker_env(BULL_PREFIX=prefix, APP_ENV="production", **settings)


def with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{host}"))


async def test_the_start_line_says_what_runs_and_where_it_records(
    prefix: str, tmp_path: Path, workers: Any
) -> None:
    env = env_for(
        prefix,
        SQLITE_PATH=str(tmp_path / "jobs.sqlite3"),
        WORKER_CONCURRENCY="3",
        RECORD_QUEUES="node-only",
    )
    first = workers(env)
    line = await first.wait_for("runner started")
    assert " INFO " in line and "bullworker.runner: " in line
    said = line.split("runner started: ", 1)[1]
    assert said == (
        f"bullworker {__version__}; queues default, other; concurrency 3; "
        "jobs Fail, LogAsync, LogSync, Sleep; "
        f"recording to SQLite {tmp_path / 'jobs.sqlite3'} (leader); "
        "record-only queues node-only"
    )
    # A second runner of the same queues competes for the recorder locks and loses.
    second = workers(env)
    line = await second.wait_for("runner started")
    assert line.endswith(
        f"recording to SQLite {tmp_path / 'jobs.sqlite3'} (follower: another process records); "
        "record-only queues node-only"
    )
    assert "'recorder:default' is a follower" in second.text()
    # When the leader stops, the follower takes over and says so.
    assert await first.stop() == 0
    await second.wait_for("'recorder:default' became leader")
    assert await second.stop() == 0


async def test_the_start_line_names_postgres_without_its_password(
    prefix: str, workers: Any
) -> None:
    dsn = with_password(PG_DSN, "s3cret-pw")
    worker = workers(env_for(prefix, DATABASE_URL=dsn, DATABASE_SCHEMA="public"))
    line = await worker.wait_for("runner started")
    parts = urlsplit(PG_DSN)
    where = f"{parts.username or 'postgres'}@{parts.hostname}:{parts.port or 5432}{parts.path}"
    assert f"; recording to PostgreSQL {where} (schema public) (leader)" in line, line
    assert await worker.stop() == 0
    assert "s3cret-pw" not in worker.text()


async def test_recording_off_and_a_stop_with_nothing_running(prefix: str, workers: Any) -> None:
    worker = workers(env_for(prefix, RECORD_JOBS="false"))
    line = await worker.wait_for("runner started")
    assert line.endswith("; recording off (RECORD_JOBS=false)")
    assert await worker.stop() == 0
    lines = worker.text().splitlines()
    stopping = next(i for i, line in enumerate(lines) if "stopping: no job is running" in line)
    assert "runner stopped" in lines[-1] and stopping < len(lines) - 1


async def test_the_stop_line_counts_running_jobs_and_the_grace(
    prefix: str, workers: Any, producer: App
) -> None:
    worker = workers(env_for(prefix, RECORD_JOBS="false", SHUTDOWN_GRACE="1.5"))
    await worker.wait_for("runner started")
    for _ in range(2):
        await producer.worker_service.queue_job(Sleep, {"seconds": 60})
    # Both handlers run (a job active in Redis may not have reached its handler yet).
    await eventually(lambda: worker.text().count("sleeping 60 s") == 2, 15)
    started = time.monotonic()
    assert await worker.stop() == 0
    assert time.monotonic() - started < 10
    lines = worker.text().splitlines()
    [stopping] = [i for i, line in enumerate(lines) if "stopping:" in line]
    assert lines[stopping].endswith(
        "bullworker.runner: stopping: waiting up to 1.5 s for 2 running jobs"
    )
    assert "SIGTERM received: shutting down (send it again to stop at once)" in lines[stopping - 1]
    [stopped] = [i for i, line in enumerate(lines) if "runner stopped" in line]
    assert stopped > stopping
    assert any("force-closing" in line for line in lines[stopping:stopped])


async def test_json_lines_carry_the_job_fields(prefix: str, workers: Any, producer: App) -> None:
    env = env_for(prefix, RECORD_JOBS="false", LOG_FORMAT="json")
    worker = workers(env)
    await worker.wait_for("runner started")
    async_id = await producer.worker_service.queue_job(LogAsync, {"n": 1})
    sync_id = await producer.worker_service.queue_job(LogSync, {"n": 2})
    failed_id = await producer.worker_service.queue_job(Fail, {"n": 3})
    for queue_name, job_id in (("default", async_id), ("other", sync_id), ("default", failed_id)):
        async with bull_queue(queue_name, prefix) as queue:
            await wait_finished(queue, job_id, timeout=15)
    assert await worker.stop() == 0
    entries = [json.loads(line) for line in worker.text().splitlines()]  # every line is JSON
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        assert entry["time"].endswith("Z")
    [started] = [e for e in entries if e["message"].startswith("runner started: ")]
    assert (started["level"], started["logger"]) == ("INFO", "bullworker.runner")
    assert "queue" not in started and "job_id" not in started
    [in_async] = [e for e in entries if e["message"] == "async handler got 1"]
    assert in_async["logger"] == "tests.logging_app"
    assert (in_async["queue"], in_async["job_name"], in_async["job_id"]) == (
        "default", "LogAsync", async_id
    )  # fmt: skip
    [in_sync] = [e for e in entries if e["message"] == "sync handler got 2"]
    assert (in_sync["queue"], in_sync["job_name"], in_sync["job_id"]) == (
        "other",
        "LogSync",
        sync_id,
    )
    [failure] = [
        e for e in entries if "failing on purpose" in e["message"] and e["level"] == "WARNING"
    ]
    assert (failure["queue"], failure["job_name"], failure["job_id"]) == (
        "default",
        "Fail",
        failed_id,
    )


async def test_log_level_warning_hides_the_info_lines(
    prefix: str, workers: Any, producer: App
) -> None:
    worker = workers(env_for(prefix, RECORD_JOBS="false", LOG_LEVEL="warning"))
    job_id = await producer.worker_service.queue_job(Fail, {"n": 1})
    async with bull_queue("default", prefix) as queue:
        await wait_finished(queue, job_id, timeout=20)
    assert await worker.stop() == 0
    text = worker.text()
    assert " WARNING " in text and "failing on purpose" in text, text
    assert " INFO " not in text and "runner started" not in text, text


async def test_log_options_on_the_command_line(prefix: str, workers: Any) -> None:
    worker = workers(
        env_for(prefix, RECORD_JOBS="false", LOG_LEVEL="WARNING"),
        "--log-level", "debug", "--log-format", "JSON",
    )  # fmt: skip
    await worker.wait_for("runner started")
    assert await worker.stop() == 0
    entries = [json.loads(line) for line in worker.text().splitlines()]
    assert any(e["level"] == "DEBUG" for e in entries)


def test_a_bad_log_format_is_refused(prefix: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", "start", "--app", APP],
        cwd=ROOT, env=env_for(prefix, LOG_FORMAT="xml"), capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "LOG_FORMAT" in result.stderr and "xml" in result.stderr
