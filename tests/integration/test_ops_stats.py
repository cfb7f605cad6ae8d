"""``bullworker stats``: queue counts, recorder lag and leader, real processes."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from tests.helpers import bull_queue, eventually, wait_finished
from tests.integration import ops_app
from tests.integration.ops_support import APP, bullworker, make_app, ok_json, running

# --------------------------------------------------------------------------- stats


async def test_stats_counts_leader_and_lag(
    prefix: str, pg_dsn: str, pg_schema: str, env: dict[str, str], tmp_path: Path
) -> None:
    producer = make_app(prefix, pg_dsn, pg_schema)
    service = producer.worker_service
    await service.queue_job(ops_app.OpsEcho, {"n": 1})
    await service.queue_job(ops_app.OpsEcho, {"n": 2}, delay=600_000)
    flaky = await service.queue_job(ops_app.OpsFlaky, {"flag": str(tmp_path / "missing")})
    await service.close()

    human = await bullworker(env, "stats", "--app", APP)
    assert human.returncode == 0, human.stderr
    header, line = human.stdout.splitlines()
    assert header.split() == [
        "QUEUE", "PAUSED", "WAITING", "ACTIVE", "DELAYED", "FAILED", "COMPLETED", "UNRECORDED",
        "LAG", "LOST", "LEADER",
    ]  # fmt: skip
    assert line.split() == ["ops", "no", "2", "0", "1", "0", "0", "0", "0.0s", "0", "none"]
    [stats] = await ok_json(env, "stats")
    assert stats["leader"] is None
    assert stats["paused"] is False
    assert (stats["waiting"], stats["delayed"], stats["completed"]) == (2, 1, 0)
    assert stats["lost"] == {
        "completed": 0, "failed": 0, "total": 0, "lastJob": None, "lastStatus": None,
        "lastAt": None,
    }  # fmt: skip

    # Finished but not recorded: they wait in Redis, and the lag grows.
    without_recording = make_app(prefix, pg_dsn, pg_schema, record_jobs=False)
    async with running(without_recording), bull_queue("ops", prefix) as queue:
        await wait_finished(queue, flaky)
    await asyncio.sleep(0.2)
    [stats] = await ok_json(env, "stats")
    assert (stats["waiting"], stats["completed"], stats["failed"]) == (0, 1, 1)
    assert stats["unrecorded"] == 2
    assert stats["lag_seconds"] >= 0.2

    # A recording runner leads the queue and records them; they stay for the keep window.
    async with running(make_app(prefix, pg_dsn, pg_schema)):

        async def recorded() -> bool:
            [s] = await ok_json(env, "stats")
            return s["leader"] is not None and s["unrecorded"] == 0

        await eventually(recorded, timeout=20)
        [stats] = await ok_json(env, "stats")
        assert stats["leader"]["pid"] == os.getpid()
        assert stats["leader"]["host"] == socket.gethostname()
        assert stats["leader"]["since"].endswith("Z")
        assert stats["lag_seconds"] == 0
        assert (stats["completed"], stats["failed"]) == (1, 1)
        human = await bullworker(env, "stats", "--app", APP)
        assert f"{socket.gethostname()} pid {os.getpid()} since " in human.stdout
