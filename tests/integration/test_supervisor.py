"""`bullworker start --processes N`: a supervisor that keeps N workers running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bullworker.core import keys
from bullworker.history.store import open_store
from tests.helpers import REDIS_URL, bull_queue, bullworker_env, eventually

ROOT = Path(__file__).resolve().parents[2]


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


async def test_processes_are_supervised_and_share_one_recorder(prefix: str, tmp_path: Path) -> None:
    env = bullworker_env(
        BULL_PREFIX=prefix,
        APP_ENV="production",
        SQLITE_PATH=str(tmp_path / "jobs.sqlite3"),
        RECORDER_SWEEP_INTERVAL="1",
        SHUTDOWN_GRACE="2",
        LEADER_TTL="2",
        WORKER_LOCK_DURATION="2000",
        WORKER_STALLED_INTERVAL="1000",
    )
    cmd = [sys.executable, "-m", "bullworker", "start", "--processes", "3",
           "--app", "tests.integration.recorder_app:app"]  # fmt: skip
    sup = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        await eventually(lambda: len(children(sup.pid)) == 3, timeout=10)
        first = children(sup.pid)
        async with bull_queue("default", prefix) as queue:
            await queue.addBulk([{"name": "TickJob", "data": {"n": n}} for n in range(300)])
            victim = sorted(first)[0]
            os.kill(victim, signal.SIGKILL)
            await eventually(
                lambda: len(children(sup.pid)) == 3 and victim not in children(sup.pid)
            )
            assert len(children(sup.pid) - first) == 1  # only the dead one was replaced

            store = open_store(None, sqlite_path=env["SQLITE_PATH"])
            await store.open()
            try:

                async def all_recorded() -> bool:
                    return await store.count() == 300

                await eventually(all_recorded, timeout=60)
            finally:
                await store.close()
        # exactly one recorder: the leader is one of the live children (after a takeover
        # if the killed process was the leader)
        info = keys.leader_info_key(prefix, "default")

        async def leader_alive() -> bool:
            return int(await _hget(info, "pid")) in children(sup.pid)

        await eventually(leader_alive, timeout=10)

        alive = children(sup.pid)
        sup.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert await asyncio.to_thread(sup.wait, 20) == 0
        assert time.monotonic() - started < 10
        assert not any(Path(f"/proc/{pid}").exists() for pid in alive)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


async def _hget(key: str, field: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return str(await client.hget(key, field))
    finally:
        await client.aclose()


async def test_a_signal_to_the_process_group_stops_gracefully(prefix: str, tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole group: each child must see one signal, not two."""
    log = tmp_path / "supervisor.log"
    env = bullworker_env(
        BULL_PREFIX=prefix, APP_ENV="production", SQLITE_PATH=str(tmp_path / "jobs.sqlite3"),
        SHUTDOWN_GRACE="5", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    cmd = [sys.executable, "-m", "bullworker", "start", "--processes", "2",
           "--app", "tests.integration.recorder_app:app"]  # fmt: skip
    with log.open("w") as out:
        sup = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        await eventually(lambda: log.read_text().count("runner started") == 2, timeout=10)
        os.killpg(sup.pid, signal.SIGINT)
        assert await asyncio.to_thread(sup.wait, 20) == 0
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    text = log.read_text()
    assert "second SIGINT" not in text, text
    assert text.count("runner stopped") == 2, text
