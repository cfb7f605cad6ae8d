"""The exit codes of docs/errors.md, from real ``python -m bullworker`` processes.

0 ok, 1 a job or an operation failed, 2 usage, 3 cannot connect, 4 configuration; a
refused Redis or PostgreSQL is said within 2 s by every command, naming where and
what to check, never the password.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bullworker.core.version import __version__
from bullworker.transport.bullmq_compat import installed_version
from tests.helpers import bullworker_env

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.ops_app:app"  # has a cron job, so `schedules` asks Redis


def closed_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(prefix: str, tmp_path: Path) -> dict[str, str]:
    return bullworker_env(
        BULL_PREFIX=prefix, APP_ENV="production", SQLITE_PATH=str(tmp_path / "jobs.sqlite3")
    )


def bullworker(env: dict[str, str], *args: str, **extra: str) -> tuple[int, str, str, float]:
    """Exit code, stdout, stderr and seconds of ``python -m bullworker ARGS``."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bullworker", *args],
        cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def test_ok(env: dict[str, str]) -> None:
    code, out, err, _ = bullworker(env, "queue", "OpsEcho", "--app", APP)
    assert code == 0, err
    assert out.startswith("ops:")


def test_version(env: dict[str, str]) -> None:
    code, out, _, _ = bullworker(env, "--version")
    assert code == 0
    assert out.strip() == f"bullworker {__version__} (bullmq {installed_version()})"


def test_a_job_or_an_operation_that_failed_is_1(env: dict[str, str]) -> None:
    code, _, err, _ = bullworker(env, "queue", "NoSuchJob", "--app", APP)
    assert code == 1
    assert err.startswith("error: unknown job 'NoSuchJob'")
    code, out, _, _ = bullworker(env, "doctor", "--app", "tests.integration.ops_app:broken_app")
    assert code == 1
    assert "FAIL" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "--concurrency", "0"], "error: Invalid value for '--concurrency': "),
        (["stats", "--nope"], "error: No such option: --nope"),
        (["jobs", "show"], "error: Missing argument 'ID'."),
        (["frobnicate"], "error: No such command 'frobnicate'."),
    ],
)
def test_usage_errors_are_2_in_two_lines_at_most(
    env: dict[str, str], args: list[str], message: str
) -> None:
    code, _, err, _ = bullworker(env, *args)
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith(message), err
    assert len(lines) <= 2 and all(line.startswith("Try '") for line in lines[1:]), err
    assert "╭" not in err and "Usage:" not in err


def test_a_bad_app_spec_is_2(env: dict[str, str]) -> None:
    code, _, err, _ = bullworker(env, "stats", "--app", "tests.integration.ops_app:nothing")
    assert code == 2
    assert err == "error: module 'tests.integration.ops_app' has no attribute 'nothing'\n"


def test_configuration_errors_are_4(env: dict[str, str]) -> None:
    code, _, err, _ = bullworker(env, "stats", "--app", APP, REDIS_PORT="abc")
    assert (code, err.splitlines()[0][:40]) == (4, "error: REDIS_PORT='abc' is not a valid i")
    tls = {"REDIS_URL": "rediss://127.0.0.1:6379/0", "REDIS_TLS_CA_FILE": "/nowhere/ca.pem"}
    code, _, err, _ = bullworker(env, "stats", "--app", APP, **tls)
    assert code == 4, err
    assert err.startswith("error: ") and "/nowhere/ca.pem" in err


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "OpsEcho"],
        ["stats"],
        ["jobs", "show", "ops:1"],
        ["retry", "--id", "ops:1"],
        ["start"],
        ["start", "--processes", "2"],
    ],
    ids=lambda args: " ".join(args),
)
def test_refused_redis_is_3_within_2_s(env: dict[str, str], args: list[str]) -> None:
    url = f"redis://app:hunter2@127.0.0.1:{closed_port()}/0"
    code, _, err, seconds = bullworker(env, *args, "--app", APP, REDIS_URL=url)
    assert code == 3, err
    assert seconds < 2.0
    assert err.splitlines()[-1] == (
        f"error: cannot connect to Redis at {url.replace('hunter2', '***')}: connection "
        "refused; is redis-server running there? check REDIS_URL"
    )
    assert "hunter2" not in err


def test_refused_redis_in_doctor_and_schedules_within_2_s(env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    code, out, _, seconds = bullworker(env, "doctor", "--app", APP, REDIS_URL=url)
    assert (code, seconds < 2.0) == (1, True)  # doctor: a FAIL line, as for any FAIL
    assert f"FAIL  redis       cannot reach Redis at {url}: connection refused\n" in out
    code, out, err, seconds = bullworker(env, "schedules", "--app", APP, REDIS_URL=url)
    assert (code, seconds < 2.0) == (0, True)  # the schedules, without what Redis has
    assert f"cannot connect to Redis at {url}: connection refused" in err
    assert "OpsNightly" in out


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["jobs", "show", "ops:1"],
        ["retry", "--id", "ops:1"],
        ["prune", "--older-than", "1d"],
    ],
    ids=lambda args: " ".join(args),
)
def test_refused_postgres_is_3_within_2_s(env: dict[str, str], args: list[str]) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{closed_port()}/test"
    code, _, err, seconds = bullworker(env, *args, "--app", APP, DATABASE_URL=url)
    assert code == 3, err
    assert seconds < 2.0
    assert err.splitlines() == [
        f"error: cannot connect to PostgreSQL at {url.replace('hunter2', '***')}: connection "
        "refused; is PostgreSQL running there? check DATABASE_URL"
    ]


def test_the_runner_says_so_when_postgres_is_refused(env: dict[str, str]) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{closed_port()}/test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bullworker", "start", "--app", APP],
        cwd=ROOT, env={**env, "DATABASE_URL": url}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        started = time.monotonic()
        line = proc.stderr.readline()
        while line and "cannot connect to PostgreSQL" not in line:
            line = proc.stderr.readline()
        assert time.monotonic() - started < 2.0 + 1.0  # + the interpreter's start
        assert "connection refused" in line and "finished jobs stay in Redis" in line
        assert "hunter2" not in line
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_a_server_that_never_answers_is_3_after_redis_timeout(
    env: dict[str, str], silent_port: int
) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0"
    code, _, err, seconds = bullworker(
        env, "queue", "OpsEcho", "--app", APP, REDIS_URL=url, REDIS_TIMEOUT="1"
    )
    assert code == 3
    assert seconds < 5.0
    assert (
        err
        == f"error: could not queue OpsEcho: Redis at {url} did not answer within 1 s (TimeoutError)\n"
    )


def test_json_errors_go_to_stderr_only(env: dict[str, str]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    code, out, err, _ = bullworker(env, "stats", "--json", "--app", APP, REDIS_URL=url)
    assert (code, out) == (3, "")
    assert err.startswith("error: cannot connect to Redis")
    assert json.loads(bullworker(env, "stats", "--json", "--app", APP)[1]) is not None
