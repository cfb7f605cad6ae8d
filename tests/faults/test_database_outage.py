"""PostgreSQL becomes unreachable: the runner goes on, finished jobs wait in Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from bullworker import AppConfig, create_app
from tests.conftest import REDIS_URL
from tests.faults import fault_app
from tests.faults.report import Scenario
from tests.faults.workload import (
    ExecLog,
    Producer,
    dup_rows,
    finished_in_redis,
    store_rows,
    until,
    with_store,
)
from tests.proxy import TcpProxy

GROUP = "PostgreSQL outage"


async def test_database_cut_for_5_s(
    scenario: Scenario,
    prefix: str,
    pg_dsn: str,
    pg_schema: str,
    exec_log: ExecLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PostgreSQL unreachable for 5 s."""
    scenario.injected = "TCP proxy to PostgreSQL cut for 5 s"
    host, _, rest = pg_dsn.partition("@")[2].partition(":")
    port = int(rest.split("/")[0])
    proxy = TcpProxy(host, port)
    await proxy.start()
    via_proxy = pg_dsn.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
    settings = {"recorder_sweep_interval": 2.0}
    scenario.settings = {"RECORDER_SWEEP_INTERVAL": 2.0, "DATABASE_URL": "(through the proxy)"}
    config = AppConfig(
        environ={}, redis_url=REDIS_URL, bull_prefix=prefix, app_env="production",
        database_url=via_proxy, database_schema=pg_schema, **settings,
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=fault_app.registry)
    runner = app.create_runner()
    direct = await with_store(pg_dsn, schema=pg_schema)
    producer = Producer(app, every=0.05)
    producing = None
    try:
        await runner.start()
        producing = asyncio.create_task(producer.run())
        await asyncio.sleep(1.5)
        await until(lambda: _count_at_least(direct, 1), 10, "recording started")
        await proxy.cut()
        cut = time.time()
        await asyncio.sleep(5.0)
        rows_during_cut = await direct.count()
        waiting = await finished_in_redis(REDIS_URL, prefix)
        ran_during_cut = sum(1 for t in exec_log.done_at().values() if cut <= t)
        await proxy.restore()
        restored = time.time()
        await asyncio.sleep(1.0)
        producer.stop()
        await producing

        sent = set(producer.sent)
        await until(lambda: sent <= exec_log.done(), 20, "every queued job ran")
        await until(lambda: _count_at_least(direct, len(exec_log.done())), 40, "all recorded")
        caught_up = time.time() - restored
        await until(lambda: _redis_empty(prefix), 10, "nothing left to record")
        rows = await store_rows(direct)
        errors = [r.getMessage() for r in caplog.records if r.name == "bullworker.recorder"]
        error = next((m for m in errors if "cannot record" in m), "")
        scenario.figures(
            sent=len(sent), completed=len(exec_log.done()), recorded=len(rows),
            dup_executed=exec_log.dup_executed(), dup_rows=dup_rows(rows),
            recovery=f"recorder caught up ≤ {caught_up:.1f} s",
        )  # fmt: skip
        scenario.explanation = (
            "A TCP proxy between the runner and PostgreSQL closed every connection and refused "
            f"new ones for 5 s. The runner went on: {ran_during_cut} jobs finished during the "
            f"cut, {waiting} finished jobs waited in Redis (none removed before its row was "
            f"committed), and the recorder logged `{error.split(';')[0]}` and retried with "
            f"backoff. After the proxy came back it caught up within {caught_up:.1f} s; every "
            "job has exactly one row and no finished job waits in Redis to be recorded. "
            "tests/integration/test_recorder.py tests the same with a recorder alone."
        )
        assert ran_during_cut > 0
        assert waiting >= ran_during_cut - rows_during_cut
        assert error
        assert dup_rows(rows) == 0
        assert {r.data["n"] for r in rows} == exec_log.done()
    finally:
        producer.stop()
        if producing is not None:
            await producing
        await runner.stop(grace=1)
        await app.stop()
        await direct.close()
        await proxy.cut()


async def _count_at_least(store: object, n: int) -> bool:
    return bool(await store.count() >= n)  # type: ignore[attr-defined]


async def _redis_empty(prefix: str) -> bool:
    return await finished_in_redis(REDIS_URL, prefix) == 0
