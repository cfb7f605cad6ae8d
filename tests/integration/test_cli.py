"""The bullworker CLI as a user runs it: real processes, real Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import bull_queue, bullworker_env, eventually, wait_finished

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.cli_app:app"


def env_for(prefix: str, **extra: str) -> dict[str, str]:
    base = {"BULL_PREFIX": prefix, "APP_ENV": "production", "RECORD_JOBS": "false"}
    return bullworker_env(**{**base, **extra})


def bullworker(
    prefix: str, *args: str, timeout: float = 30, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT,
        env=env_for(prefix, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_id_of(queued: subprocess.CompletedProcess[str]) -> str:
    """The job id of what ``bullworker queue`` printed (``<queue>:<id>``)."""
    return queued.stdout.split()[-1].partition(":")[2]


def assert_clean_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert text in lines[0]


async def test_queue_prints_the_job_id_and_uses_the_jobs_queue(prefix: str) -> None:
    result = bullworker(
        prefix, "queue", "CliOther", "--data", '{"n": 7}', "--app", APP, "--delay", "60000"
    )
    assert result.returncode == 0, result.stderr
    queue_name, _, job_id = result.stdout.strip().splitlines()[-1].partition(":")
    assert queue_name == "cli-other"  # <queue>:<id>, as jobs show and retry --id take it
    async with bull_queue("cli-other", prefix) as queue:
        job = await queue.getJob(job_id)
        assert job.name == "CliOther"
        assert job.data == {"n": 7}
        assert await job.getState() == "delayed"


async def test_app_may_come_from_the_environment(prefix: str) -> None:
    result = bullworker(
        prefix, "queue", "CliEmail", "--data", '{"to":"a@b.c","subject":"Hi"}', BULLWORKER_APP=APP
    )
    assert result.returncode == 0, result.stderr
    async with bull_queue("default", prefix) as queue:
        job = await queue.getJob(job_id_of(result))
        assert job.data == {"to": "a@b.c", "subject": "Hi"}


def test_unknown_job_lists_the_known_ones(prefix: str) -> None:
    result = bullworker(prefix, "queue", "Nope", "--app", APP)
    assert_clean_error(result, "unknown job 'Nope'; registered jobs: CliEmail, CliOther")
    assert "--force" in result.stderr


async def test_force_queues_an_unregistered_name_for_another_consumer(prefix: str) -> None:
    result = bullworker(
        prefix, "queue", "NodeOnlyJob", "--data", '{"a": [1]}', "--force", "--app", APP
    )
    assert result.returncode == 0, result.stderr
    async with bull_queue("default", prefix) as queue:
        job = await queue.getJob(job_id_of(result))
        assert (job.name, job.data) == ("NodeOnlyJob", {"a": [1]})


def test_invalid_json(prefix: str) -> None:
    assert_clean_error(
        bullworker(prefix, "queue", "CliEmail", "--data", "{nope", "--app", APP),
        "--data is not valid JSON",
    )


def test_payload_that_fails_validation(prefix: str) -> None:
    result = bullworker(prefix, "queue", "CliEmail", "--data", '{"to": "x"}', "--app", APP)
    assert_clean_error(result, "CliEmail: invalid payload: subject: Field required")


def test_refused_redis_is_said_at_once(prefix: str) -> None:
    started = time.monotonic()
    result = bullworker(
        prefix,
        "queue",
        "CliOther",
        "--app",
        APP,
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert_clean_error(
        result,
        "cannot connect to Redis at redis://127.0.0.1:1/0: connection refused; "
        "is redis-server running there? check REDIS_URL",
    )
    assert result.returncode == 3
    assert time.monotonic() - started < 2


async def test_queue_json_and_the_ref_that_jobs_show_takes(prefix: str, tmp_path: Path) -> None:
    store = {"SQLITE_PATH": str(tmp_path / "jobs.sqlite3")}
    result = bullworker(prefix, "queue", "CliOther", "--json", "--delay", "60000", "--app", APP)
    assert result.returncode == 0, result.stderr
    queued = json.loads(result.stdout)
    assert queued == {
        "queue": "cli-other",
        "id": queued["id"],
        "name": "CliOther",
        "ref": f"cli-other:{queued['id']}",
    }
    shown = bullworker(prefix, "jobs", "show", queued["ref"], "--json", "--app", APP, **store)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["id"] == queued["ref"]
    # A bare id is one of BULL_QUEUE.
    plain = bullworker(prefix, "queue", "CliEmail", "--data", '{"to": "a", "subject": "b"}',
                       "--delay", "60000", "--app", APP)  # fmt: skip
    ref = plain.stdout.strip()
    assert ref.startswith("default:")
    bare = bullworker(
        prefix, "jobs", "show", ref.partition(":")[2], "--json", "--app", APP, **store
    )
    assert bare.returncode == 0, bare.stderr
    assert json.loads(bare.stdout)[0]["id"] == ref


async def test_start_warns_about_an_unknown_queue_and_starts(prefix: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--queues", "typo,default", "--app", APP],
        cwd=ROOT, env=env_for(prefix), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        warning = await asyncio.to_thread(proc.stderr.readline)
        assert warning.startswith(
            "warning: no job of this app uses queue typo and Redis has no keys for it "
            "(this app's queues: cli-other, default); starting anyway, as Node processes"
        ), warning
        started = ""
        while "runner started" not in started:
            started = await asyncio.to_thread(proc.stderr.readline)
            assert started, "the runner did not start"
        assert "queues typo, default" in started
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_queue_is_warned_about(prefix: str) -> None:
    result = bullworker(prefix, "queue", "CliOther", "--queue", "typo", "--app", APP)
    assert result.returncode == 0, result.stderr
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: no job of this app uses queue typo and Redis has no keys")
    assert "(this app's queues: cli-other, default)" in warning
    assert "Node" in warning
    assert result.stdout.strip().startswith("typo:")
    again = bullworker(prefix, "queue", "CliOther", "--queue", "typo", "--app", APP)
    assert again.stderr == ""  # Redis has it now


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:app", "cannot import 'no_such_module': module not found"),
        ("tests.integration.cli_app:missing", "has no attribute 'missing'"),
        ("tests.integration.cli_app:not_an_app", "is a int, not a bullworker App"),
    ],
)
def test_bad_app(prefix: str, spec: str, message: str) -> None:
    assert_clean_error(bullworker(prefix, "queue", "CliEmail", "--app", spec), message)


def test_missing_app(prefix: str) -> None:
    assert_clean_error(bullworker(prefix, "queue", "CliEmail"), "no app given")


def test_start_needs_an_app_with_workers(prefix: str) -> None:
    result = bullworker(prefix, "start", "--app", "tests.integration.cli_app:producer_only")
    assert result.returncode != 0
    assert "error: this app was created without enable_worker=True" in result.stderr


def test_factory_is_called(prefix: str) -> None:
    result = bullworker(prefix, "queue", "CliOther", "--app", "tests.integration.cli_app:make_app")
    assert result.returncode == 0, result.stderr


async def test_start_processes_jobs_and_exits_cleanly_on_sigterm(prefix: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--app", APP],
        cwd=ROOT,
        env=env_for(prefix, SHUTDOWN_GRACE="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        queued = bullworker(
            prefix, "queue", "CliEmail", "--data", '{"to":"z@y.x","subject":"S"}', "--app", APP
        )
        async with bull_queue("default", prefix) as queue:
            job = await wait_finished(queue, job_id_of(queued), timeout=15)
        assert job.returnvalue == "sent to z@y.x"
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 10)
        assert code == 0
        assert time.monotonic() - started < 5
        output = proc.stdout.read() if proc.stdout else ""
        assert "runner started" in output and "runner stopped" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(prefix: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--app", APP],
        cwd=ROOT,
        env=env_for(prefix, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _wait_active(prefix: str, job_id: str) -> None:
    async with bull_queue("default", prefix) as queue:

        async def active() -> bool:
            return bool(await queue.getJobState(job_id) == "active")

        await eventually(active, timeout=15)


async def test_a_stuck_sync_handler_never_hangs_the_exit(prefix: str) -> None:
    proc = _start(prefix, SHUTDOWN_GRACE="1")
    try:
        queued = bullworker(
            prefix, "queue", "CliStuckSync", "--data", '{"seconds": 60}', "--app", APP
        )
        await _wait_active(prefix, job_id_of(queued))
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert time.monotonic() - started < 6
        output = proc.stdout.read() if proc.stdout else ""
        assert "force-closing" in output
        assert "still running after shutdown" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_second_signal_exits_at_once(prefix: str) -> None:
    proc = _start(prefix, SHUTDOWN_GRACE="30")
    try:
        queued = bullworker(
            prefix, "queue", "CliSlowAsync", "--data", '{"seconds": 60}', "--app", APP
        )
        await _wait_active(prefix, job_id_of(queued))
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # waiting for the running job within the grace
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert await asyncio.to_thread(proc.wait, 10) == 130
        assert time.monotonic() - started < 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
