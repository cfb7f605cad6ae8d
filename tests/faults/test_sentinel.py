"""Redis Sentinel: the primary fails over; runner, producers and recorder follow it.

Also sentinels that want a password of their own (REDIS_SENTINEL_PASSWORD).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullworker import AppConfig, create_app
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.servers import SentinelSet
from tests.faults.workload import (
    APP,
    ExecLog,
    Producer,
    base_env,
    dup_rows,
    run_cli,
    store_rows,
    until,
    with_store,
)

GROUP = "Sentinel"
DATA_PASSWORD = "data-pw-8a3f"
SENTINEL_PASSWORD = "sentinel-pw-5b1e"
WATCHER_PASSWORD = "watcher-pw-0c7d"


@pytest.fixture
def secured_sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A Sentinel set whose data nodes and sentinel each want their own password.

    The sentinel also has an ACL user ``watcher``.
    """
    servers = SentinelSet(
        tmp_path / "sentinel", password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD,
        sentinel_users={"watcher": WATCHER_PASSWORD},
    )  # fmt: skip
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


async def _replica_in_sync(sentinel: aioredis.Redis, name: str) -> bool:
    replicas = await sentinel.sentinel_slaves(name)
    return bool(replicas) and all(r.get("master-link-status") == "ok" for r in replicas)


async def failover(
    scenario: Scenario, servers: SentinelSet, exec_log: ExecLog, tmp_path: Path, *, kill: bool
) -> None:
    sentinel = aioredis.Redis(port=servers.sentinel_port, decode_responses=True)
    await until(lambda: _replica_in_sync(sentinel, servers.name), 20, "replica in sync")
    settings: dict[str, Any] = {
        "redis_sentinel_host": "127.0.0.1", "redis_sentinel_port": servers.sentinel_port,
        "redis_sentinel_name": servers.name, "redis_timeout": 3.0, "leader_ttl": 3.0,
        "recorder_sweep_interval": 2.0, "worker_lock_duration": 3000,
        "worker_stalled_interval": 1000,
    }  # fmt: skip
    scenario.settings = {k.upper(): v for k, v in settings.items() if k != "redis_sentinel_port"}
    config = AppConfig(
        environ={}, app_env="production", bull_prefix="sentinel",
        sqlite_path=str(tmp_path / "jobs.sqlite3"), **settings,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    runner = app.create_runner()
    await runner.start()
    store = await with_store(None, sqlite_path=config.sqlite_path)
    producer = Producer(app)
    producing = asyncio.create_task(producer.run())
    try:
        await asyncio.sleep(1.5)
        started = time.time()
        if kill:
            servers.primary.kill()
        else:
            assert await sentinel.execute_command("SENTINEL", "FAILOVER", servers.name)

        async def switched() -> bool:
            address = await sentinel.sentinel_get_master_addr_by_name(servers.name)
            return bool(address) and int(address[1]) == servers.replica.port

        await until(switched, 30, "the replica promoted")
        switch = time.time()
        await asyncio.sleep(3.0)
        producer.stop()
        await producing

        sent = set(producer.sent)
        await until(lambda: sent <= exec_log.done(), 30, "every queued job ran")
        await until(lambda: _count_at_least(store, len(exec_log.done())), 30, "all recorded")
        rows = await store_rows(store)
        done_at = exec_log.done_at()
        after = [n for n in producer.sent if producer.sent_at[n] >= switch]
        resumed = min(done_at[n] for n in after) - switch
        slowest = max(done_at[n] - producer.sent_at[n] for n in after)
        scenario.figures(
            sent=len(sent), completed=len(exec_log.done()), recorded=len(rows),
            dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
            recovery=f"promoted after {switch - started:.1f} s; runner {resumed:.2f} s later",
        )  # fmt: skip
        took = max((t for _, t, _ in producer.refused), default=0.0)
        scenario.explanation = (
            f"{'The primary was killed (SIGKILL)' if kill else '`SENTINEL FAILOVER`'} while a "
            "producer queued a job every 50 ms through the sentinel and the runner ran them. "
            f"The sentinel named the replica master {switch - started:.1f} s later. "
            + (
                f"{len(producer.refused)} producer calls raised `QueueUnavailable` (slowest "
                f"{took:.2f} s); the others"
                if producer.refused
                else "No producer call failed: they"
            )
            + " waited, retrying, while the failover was in progress and then wrote to the new "
            f"master. The first job queued after the switch finished "
            f"{resumed:.2f} s after it (the slowest waited {slowest:.2f} s); every job queued ran "
            "and was recorded once. Before the fixes in `bullworker/connection.py` this lost "
            "jobs: bullmq's long-lived single connections reconnected to the old address for "
            "ever after a kill (the runner never resumed), and after `SENTINEL FAILOVER` they "
            "kept writing to the demoted primary until the sentinel reconfigured it about 10 s "
            "later, which then dropped those writes (39 rows for 140 jobs in one run)."
        )
        assert sent, "nothing was queued"
        assert dup_rows(rows) == 0
        assert {r.data["n"] for r in rows} == exec_log.done()
        assert resumed < 6.0  # a worker blocked on the old primary returns within drainDelay
    finally:
        producer.stop()
        await producing
        await runner.stop(grace=1)
        await app.stop()
        await store.close()
        await sentinel.aclose()


async def _count_at_least(store: Any, n: int) -> bool:
    return bool(await store.count() >= n)


async def test_sentinel_failover_command(
    scenario: Scenario, sentinel_set: SentinelSet, exec_log: ExecLog, tmp_path: Path
) -> None:
    """Manual failover (SENTINEL FAILOVER)."""
    scenario.injected = "SENTINEL FAILOVER mid-stream"
    await failover(scenario, sentinel_set, exec_log, tmp_path, kill=False)


async def test_sentinel_primary_killed(
    scenario: Scenario, sentinel_set: SentinelSet, exec_log: ExecLog, tmp_path: Path
) -> None:
    """The primary dies; the sentinel promotes the replica."""
    scenario.injected = "SIGKILL the primary mid-stream"
    await failover(scenario, sentinel_set, exec_log, tmp_path, kill=True)


def _timed_cli(args: list[str], env: dict[str, str]) -> tuple[str, int, float]:
    """All output, the exit code and the seconds of a ``bullworker`` command."""
    started = time.monotonic()
    result = run_cli(args, env)
    return result.stdout + result.stderr, result.returncode, time.monotonic() - started


def _last_line(output: str) -> str:
    lines = output.strip().splitlines()
    return lines[-1] if lines else ""


async def test_sentinel_with_password(
    scenario: Scenario, secured_sentinel_set: SentinelSet, exec_log: ExecLog, tmp_path: Path
) -> None:
    """Sentinels with requirepass and an ACL user; the data nodes have their own password."""
    servers = secured_sentinel_set
    scenario.injected = (
        "`requirepass` and an ACL user on the sentinel, another `requirepass` on the data "
        "nodes; wrong, missing and misplaced passwords"
    )
    sentinel = aioredis.Redis(
        port=servers.sentinel_port, password=SENTINEL_PASSWORD, decode_responses=True
    )
    await until(lambda: _replica_in_sync(sentinel, servers.name), 20, "replica in sync")
    await sentinel.aclose()
    sqlite_path = str(tmp_path / "jobs.sqlite3")
    settings: dict[str, Any] = {
        "redis_sentinel_host": "127.0.0.1", "redis_sentinel_port": servers.sentinel_port,
        "redis_sentinel_name": servers.name, "redis_sentinel_username": "watcher",
        "redis_sentinel_password": WATCHER_PASSWORD, "redis_password": DATA_PASSWORD,
        "redis_timeout": 2.0, "recorder_sweep_interval": 1.0,
    }  # fmt: skip
    scenario.settings = {
        "REDIS_SENTINEL_USERNAME": "watcher", "REDIS_SENTINEL_PASSWORD": "***",
        "REDIS_PASSWORD": "***", "BULL_REDIS_SENTINEL_PASSWORD": "*** (the CLI)",
    }  # fmt: skip
    config = AppConfig(
        environ={}, app_env="production", bull_prefix="sentinel", sqlite_path=sqlite_path,
        **settings,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    runner = app.create_runner()
    await runner.start()
    store = await with_store(None, sqlite_path=sqlite_path)
    # The CLI as the sentinel's default user, through the queues' scoped key.
    env = base_env(
        "sentinel", REDIS_SENTINEL_HOST="127.0.0.1", REDIS_SENTINEL_PORT=str(servers.sentinel_port),
        REDIS_SENTINEL_NAME=servers.name, BULL_REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        REDIS_PASSWORD=DATA_PASSWORD, REDIS_TIMEOUT="2", SQLITE_PATH=sqlite_path,
    )  # fmt: skip
    no_sentinel_pw = {k: v for k, v in env.items() if k != "BULL_REDIS_SENTINEL_PASSWORD"}
    no_data_pw = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    queue = ["queue", "FaultJob", "--app", APP]
    try:
        await app.worker_service.queue_jobs(fault_app.FaultJob, [{"n": n} for n in range(10)])
        cli, wrong, missing, data, doctor = await asyncio.gather(
            asyncio.to_thread(_timed_cli, [*queue, "--data", '{"n": 10}'], env),
            asyncio.to_thread(
                _timed_cli, queue, {**env, "BULL_REDIS_SENTINEL_PASSWORD": "wrong-pw"}
            ),
            asyncio.to_thread(_timed_cli, queue, no_sentinel_pw),
            # The sentinel's password is not sent to the data nodes.
            asyncio.to_thread(_timed_cli, queue, no_data_pw),
            asyncio.to_thread(_timed_cli, ["doctor", "--app", APP], env),
        )
        await until(lambda: set(range(11)) <= exec_log.done(), 20, "jobs ran")
        await until(lambda: _count_at_least(store, 11), 20, "every job recorded")
        rows = await store_rows(store)
    finally:
        await runner.stop(grace=1)
        await app.stop()
        await store.close()
    scenario.figures(
        sent=11, completed=len(exec_log.done()), recorded=len(rows),
        dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
    )  # fmt: skip
    refused = [_last_line(output) for output, _, _ in (wrong, missing, data)]
    slowest = max(seconds for _, _, seconds in (wrong, missing, data))
    connection = next(line for line in doctor[0].splitlines() if "sentinels:" in line)
    scenario.explanation = (
        "A sentinel with `requirepass` and an ACL user `watcher`, watching a primary and a "
        "replica with another password. The runner and its recorder connected as `watcher` "
        "(REDIS_SENTINEL_USERNAME/REDIS_SENTINEL_PASSWORD, sent to the sentinel only) with "
        "REDIS_PASSWORD for the data nodes, and `bullworker queue` as the sentinel's default "
        "user (BULL_REDIS_SENTINEL_PASSWORD); every job ran and was recorded once. Refused "
        f"sentinel credentials are not tried again (slowest refusal {slowest:.1f} s, "
        f"REDIS_TIMEOUT=2): a wrong password: `{refused[0]}`; none: `{refused[1]}`. The "
        "data nodes do not get the sentinel's password; without REDIS_PASSWORD: "
        f"`{refused[2]}`. "
        f"`bullworker doctor` shows the setup with passwords hidden: `{connection.strip()}`."
    )
    outputs = "\n".join(output for output, _, _ in (cli, wrong, missing, data, doctor))
    assert cli[1] == 0, cli[0]
    for line, (_, code, seconds) in zip(refused, (wrong, missing, data), strict=True):
        assert code != 0 and line.startswith("error: ") and seconds < 8.0, line
    assert "refused the credentials: invalid username-password pair" in refused[0]
    assert "refused a client without credentials" in refused[1]
    assert "AuthenticationError" in refused[2] and "refused" not in refused[2]
    assert "sentinels: password=***" in connection
    for secret in (DATA_PASSWORD, SENTINEL_PASSWORD, WATCHER_PASSWORD, "wrong-pw"):
        assert secret not in outputs
    assert dup_rows(rows) == 0 and {r.data["n"] for r in rows} == set(range(11))
