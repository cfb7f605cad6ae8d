"""Fixtures of the fault suite: servers it starts itself, and the reliability table.

Every server (redis-server with AOF, a Sentinel set, a TLS or password-protected
Redis) runs on free ports in the test's temporary directory and is killed when
the test ends, whatever happened. The shared Redis and PostgreSQL are only used
under a unique key prefix and a fresh schema.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.faults.report import Scenario, render
from tests.faults.servers import RedisServer, SentinelSet, make_client_cert, make_tls_certs
from tests.faults.workload import ExecLog

ROWS = pytest.StashKey[list[Scenario]]()
STARTED = pytest.StashKey[float]()
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--reliability-report")
    rows = session.config.stash.get(ROWS, [])
    if not path or not rows:
        return
    total = time.monotonic() - session.config.stash.get(STARTED, time.monotonic())
    command = ".venv/bin/python -m pytest tests/faults --slow --reliability-report " + str(path)
    Path(path).write_text(render(rows, total_seconds=total, command=command))


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """This test's row of the table; its result follows the test's outcome."""
    doc = (request.function.__doc__ or request.node.name).strip().splitlines()[0]
    row = Scenario(
        group=request.module.GROUP,
        title=doc.rstrip("."),
        slow=request.node.get_closest_marker("slow") is not None,
        test=f"{Path(request.node.path).name}::{request.node.name}",
    )
    started = time.monotonic()
    request.config.stash.setdefault(STARTED, started)
    yield row
    row.seconds = time.monotonic() - started
    call = request.node.stash.get(REPORTS, {}).get("call")
    row.result = "pass" if call is not None and call.passed else "fail"
    request.config.stash.setdefault(ROWS, []).append(row)


@pytest.fixture
def exec_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExecLog:
    """Where fault_app's handlers log their runs (also for child processes)."""
    path = tmp_path / "exec.log"
    monkeypatch.setenv("FAULT_EXEC_LOG", str(path))
    return ExecLog(path)


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start redis-servers of this test: ``make(args=[...], tls_ca=...)``; all stopped after.

    ``tls_client`` (certificate, key): what the start-up probe presents to a server
    that requires client certificates.
    """
    started: list[RedisServer] = []

    def make(
        args: list[str] | None = None,
        tls_ca: Path | None = None,
        tls_client: tuple[Path, Path] | None = None,
    ) -> RedisServer:
        workdir = tmp_path / f"redis{len(started)}"
        server = RedisServer(workdir, args=args, tls_ca=tls_ca, tls_client=tls_client)
        started.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.kill()


@pytest.fixture
def aof_redis(redis_servers: Callable[..., RedisServer]) -> RedisServer:
    """A Redis whose every acknowledged write survives a crash (AOF, fsync always)."""
    return redis_servers(["--appendonly", "yes", "--appendfsync", "always"])


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path / "sentinel")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def tls_certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_tls_certs(tmp_path / "tls")


@pytest.fixture
def tls_client_cert(tls_certs: tuple[Path, Path, Path]) -> tuple[Path, Path]:
    """A client certificate (and key) signed by the CA of ``tls_certs``."""
    return make_client_cert(tls_certs[0].parent)


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    name = f"bwfault_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def unique_prefix() -> str:
    """A key prefix for servers started by the test (nothing to clean up there)."""
    return f"bwfault-{uuid.uuid4().hex[:8]}"
