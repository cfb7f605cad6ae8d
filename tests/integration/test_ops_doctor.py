"""``bullworker doctor``: the local setup, unreachable Redis or database, an evicting Redis."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator

import psycopg
import pytest

from bullworker.history.store import schema as q
from tests.integration.ops_support import APP, bullworker, ok_json

# --------------------------------------------------------------------------- doctor


async def test_doctor_is_happy_with_the_local_setup(env: dict[str, str]) -> None:
    result = await bullworker(env, "doctor", "--app", APP)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in (
        "bullmq",
        "connection",
        "redis ",
        "redis version",
        "maxmemory-policy",
        "database",
    ):
        assert any(ln.startswith(f"OK    {check}") for ln in lines), (check, result.stdout)
    assert not any(ln.startswith("FAIL") for ln in lines)
    assert "socket_timeout=None" in result.stdout
    assert "OpsNightly: queue ops, cron '0 3 * * *' UTC" in result.stdout
    assert "no recorder leader" in result.stdout  # no runner in this test
    report = await ok_json(env, "doctor")
    assert report["ok"] is True
    by_check = {c["check"]: c["level"] for c in report["checks"]}
    assert by_check["redis"] == by_check["maxmemory-policy"] == by_check["database"] == "OK"
    assert {c["message"].split(":")[0] for c in report["checks"] if c["check"] == "job"} == {
        "OpsEcho", "OpsFlaky", "OpsNightly"
    }  # fmt: skip


async def test_doctor_fails_on_unreachable_redis(env: dict[str, str]) -> None:
    started = time.monotonic()
    nowhere = "redis://127.0.0.1:1/0"
    result = await bullworker(env, "doctor", "--app", APP, REDIS_URL=nowhere, REDIS_TIMEOUT="1")
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    [line] = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")]
    assert "redis" in line and "cannot reach Redis at redis://127.0.0.1:1/0" in line
    assert "fix: start Redis" in result.stdout
    report = json.loads(
        (
            await bullworker(
                env, "doctor", "--app", APP, "--json", REDIS_URL=nowhere, REDIS_TIMEOUT="1"
            )
        ).stdout
    )
    assert report["ok"] is False
    assert [c["check"] for c in report["checks"] if c["level"] == "FAIL"] == ["redis"]


async def test_doctor_fails_on_missing_dependency_and_database(env: dict[str, str]) -> None:
    result = await bullworker(
        env,
        "doctor",
        "--app",
        "tests.integration.ops_app:broken_app",
        DATABASE_URL="postgresql://postgres:hunter2@127.0.0.1:1/test",
    )
    assert result.returncode == 1
    failures = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL")]
    assert any("database" in ln and "unreachable" in ln for ln in failures), result.stdout
    assert any("OpsNeedsSomething" in ln and "Unregistered" in ln for ln in failures)
    assert "hunter2" not in result.stdout + result.stderr


@pytest.fixture
def evicting_redis() -> Iterator[int]:
    """A throwaway redis-server whose maxmemory-policy loses keys."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_doctor_warns_about_an_evicting_redis(
    env: dict[str, str], evicting_redis: int
) -> None:
    evicting = f"redis://127.0.0.1:{evicting_redis}/0"
    result = await bullworker(env, "doctor", "--app", APP, REDIS_URL=evicting)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    [warning] = [ln for ln in lines if ln.startswith("WARN  maxmemory-policy")]
    assert "maxmemory-policy is allkeys-lru" in warning
    assert "CONFIG SET maxmemory-policy noeviction" in result.stdout
    assert "redis.conf" in result.stdout
    report = await ok_json({**env, "REDIS_URL": evicting}, "doctor")
    [policy] = [c for c in report["checks"] if c["check"] == "maxmemory-policy"]
    assert policy["level"] == "WARN" and report["ok"] is True


async def test_doctor_warns_about_an_unpartitioned_table_that_jobs_partition_migrates(
    env: dict[str, str], pg_dsn: str, pg_schema: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in q.pg_ddl(q.pg_table(pg_schema)):  # as an earlier version made it
            conn.execute(statement)
    result = await bullworker(env, "doctor", "--app", APP)
    assert result.returncode == 0, result.stdout  # a WARN: the table works as it is
    [warning] = [ln for ln in result.stdout.splitlines() if ln.startswith("WARN  database")]
    assert "_jobs is not partitioned by day" in warning
    assert "fix: run `bullworker jobs partition`" in result.stdout

    migrated = await ok_json(env, "jobs", "partition")
    assert (migrated["alreadyPartitioned"], migrated["rows"]) == (False, 0)
    assert migrated["partitions"] > 0
    again = await bullworker(env, "jobs", "partition", "--app", APP)
    assert again.returncode == 0 and "partitioned already" in again.stdout, again.stdout
    report = await ok_json(env, "doctor")
    [database] = [c for c in report["checks"] if c["check"] == "database"]
    assert database["level"] == "OK" and database["message"].endswith("_jobs exists")
