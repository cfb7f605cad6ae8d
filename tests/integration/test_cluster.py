"""bullworker on a real Redis Cluster (three masters with a replica each, scripts/redis-cluster).

The runner, ``queue_job``, the recorder and ``bullworker stats`` on the cluster; Node
BullMQ producing into it through an ioredis Cluster; a master failover during a run, with
no job lost and no row twice. The hash-tag rule is checked without a cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bullworker import App, AppConfig, ConfigError, create_app
from bullworker.core import keys
from bullworker.transport.connection import open_queue
from tests.helpers import REDIS_CLUSTER_URL, bullworker_env, eventually
from tests.integration import recorder_app
from tests.integration.recorder_app import TickJob

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.recorder_app:app"


@pytest.fixture
async def tag() -> AsyncIterator[str]:
    """A hash-tagged key prefix owned by this test on the cluster; its keys are deleted
    afterwards. No cluster: a skip, a failure under CI."""
    if not REDIS_CLUSTER_URL:
        missing = (
            "no Redis Cluster: scripts/test starts one (scripts/redis-cluster), or set "
            "BULLWORKER_TEST_REDIS_CLUSTER_URL to a seed node"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"the cluster tests must run in CI: {missing}")
        pytest.skip(missing)
    value = "{bwtest-" + uuid.uuid4().hex[:12] + "}"
    yield value
    client = RedisCluster.from_url(REDIS_CLUSTER_URL, decode_responses=True)
    try:
        found = [k async for k in client.scan_iter(match=value.replace("{", "\\{") + ":*")]
        for start in range(0, len(found), 500):
            await client.delete(*found[start : start + 500])
    finally:
        await client.aclose()


def cluster_config(tag: str, tmp_path: Path, **settings: Any) -> AppConfig:
    settings.setdefault("sqlite_path", str(tmp_path / "jobs.sqlite3"))
    return AppConfig(
        environ={},
        redis_url=REDIS_CLUSTER_URL,
        redis_cluster=True,
        bull_prefix=tag,
        app_env="production",
        recorder_sweep_interval=1.0,
        **settings,
    )


def cluster_app(tag: str, tmp_path: Path, **settings: Any) -> App:
    config = cluster_config(tag, tmp_path, **settings)
    return create_app(config=config, enable_worker=True, registry=recorder_app.registry)


def recorded_ids(tmp_path: Path) -> list[str]:
    """The ``id`` column of every ``_jobs`` row (``<queue>:<job id>``), repeats included."""
    path = tmp_path / "jobs.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        try:
            return [str(row[0]) for row in conn.execute("SELECT id FROM _jobs")]
        except sqlite3.OperationalError:  # no table yet
            return []


async def all_recorded(tmp_path: Path, wanted: set[str]) -> bool:
    return wanted <= set(recorded_ids(tmp_path))


# --------------------------------------------------------------- the hash-tag rule


def test_cluster_config_needs_a_hash_tag_that_keeps_each_queue_in_one_slot() -> None:
    base = {"redis_url": "redis://127.0.0.1:7100", "redis_cluster": True}
    with pytest.raises(ConfigError, match="several hash slots"):
        AppConfig(environ={}, **base)  # prefix "bull": a queue's keys spread
    with pytest.raises(ConfigError, match="several hash slots"):
        AppConfig(environ={}, bull_prefix="a{b", bull_queue="c}d", **base)  # tag across both
    with pytest.raises(ConfigError, match="several hash slots"):
        AppConfig(environ={}, bull_prefix="{}", **base)  # an empty tag hashes the whole key
    assert AppConfig(environ={}, bull_prefix="{bull}", **base).redis_settings().cluster
    # A tag per queue: in the name of each queue, the prefix without one.
    AppConfig(environ={}, bull_queue="{mail}", worker_queues="{mail},{sms}", **base)
    with pytest.raises(ConfigError, match="'sms'"):
        AppConfig(environ={}, bull_queue="{mail}", worker_queues="{mail},sms", **base)
    with pytest.raises(ConfigError, match="Sentinel"):
        AppConfig(environ={}, bull_prefix="{b}", redis_sentinel_host="127.0.0.1", **base)
    with pytest.raises(ConfigError, match="database 0"):
        AppConfig(environ={}, bull_prefix="{b}", redis_url="redis://127.0.0.1:7100/2",
                  redis_cluster=True)  # fmt: skip
    # Read from the environment too, and BULL_REDIS_CLUSTER for the queues' Redis only.
    env = {"REDIS_CLUSTER": "true", "REDIS_URL": "redis://127.0.0.1:7100"}
    with pytest.raises(ConfigError, match="several hash slots"):
        AppConfig(environ=env)
    assert not AppConfig(environ={**env, "BULL_REDIS_CLUSTER": "false"}).redis_settings().cluster


def test_every_key_of_a_queue_has_the_queue_tag() -> None:
    for prefix, queue, tag in (("{bull}", "mail", "bull"), ("bull", "{mail}", "mail")):
        assert keys.queue_hash_tag(prefix, queue) == tag
        owned = [
            keys.queue_key(prefix, queue, "wait"), keys.job_key(prefix, queue, "7") + ":logs",
            keys.leader_key(prefix, queue), keys.leader_info_key(prefix, queue),
            keys.lost_key(prefix, queue), keys.recorder_cursor_key(prefix, queue),
            keys.cancel_requests_key(prefix, queue), keys.deduplication_key_prefix(prefix, queue),
            keys.queue_key(prefix, queue, "repeat") + ":" + keys.scheduler_id("Tick"),
        ]  # fmt: skip
        assert {keys.hash_tag(key) for key in owned} == {tag}


async def test_queue_job_refuses_a_queue_whose_keys_would_spread(tmp_path: Path) -> None:
    config = AppConfig(
        environ={}, redis_url="redis://127.0.0.1:7100", redis_cluster=True, bull_queue="{q}"
    )
    with pytest.raises(ConfigError, match="'other'"):
        open_queue(config, "other")


# --------------------------------------------------------------- on the cluster


async def test_runner_queue_job_recorder_and_stats_on_a_cluster(tag: str, tmp_path: Path) -> None:
    app = cluster_app(tag, tmp_path, keep_completed=5)
    runner = app.create_runner()
    await runner.start()
    try:
        service = app.worker_service
        one = await service.queue_job(TickJob, {"n": 0})
        many = await service.queue_jobs(TickJob, [{"n": n} for n in range(1, 60)])
        result = await service.queue_job(TickJob, {"n": 99}, wait=True, timeout=20)
        assert result == {"n": 99}
        wanted = {f"default:{job_id}" for job_id in [one, *many]}
        await eventually(lambda: all_recorded(tmp_path, wanted), timeout=30)
        # The keep window trims the recorded jobs to the newest 5 (TRIM_KEPT on the cluster).
        client = RedisCluster.from_url(REDIS_CLUSTER_URL, decode_responses=True)
        try:

            async def trimmed() -> bool:
                return await client.zcard(keys.queue_key(tag, "default", "completed")) <= 5

            await eventually(trimmed, timeout=20)
        finally:
            await client.aclose()
        env = bullworker_env(
            REDIS_URL=REDIS_CLUSTER_URL, REDIS_CLUSTER="true", BULL_PREFIX=tag,
            SQLITE_PATH=str(tmp_path / "jobs.sqlite3"), APP_ENV="production",
        )  # fmt: skip
        stats = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bullworker", "stats", "--app", APP, "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stats.returncode == 0, stats.stderr
        [default] = [q for q in json.loads(stats.stdout) if q["queue"] == "default"]
        assert default["completed"] <= 5
        assert default["unrecorded"] == 0
        assert default["leader"] is not None
    finally:
        await runner.stop(grace=5)
        await app.stop()
    ids = recorded_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 61


async def test_node_bullmq_produces_into_the_cluster(tag: str, tmp_path: Path) -> None:
    spec = {"jobs": [{"name": "TickJob", "data": {"n": n}} for n in range(200)]}
    node = await asyncio.to_thread(
        subprocess.run,
        ["node", str(ROOT / "tests/node/cluster_produce.mjs"), json.dumps(spec)],
        env={**bullworker_env(), "REDIS_URL": REDIS_CLUSTER_URL, "PREFIX": tag, "QUEUE": "default"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert node.returncode == 0, node.stderr
    produced = {f"default:{job_id}" for job_id in json.loads(node.stdout)["ids"]}
    assert len(produced) == 200
    app = cluster_app(tag, tmp_path)
    runner = app.create_runner()
    await runner.start()
    try:
        await eventually(lambda: all_recorded(tmp_path, produced), timeout=30)
    finally:
        await runner.stop(grace=5)
        await app.stop()
    ids = recorded_ids(tmp_path)
    assert len(ids) == len(set(ids))
    assert set(ids) == produced


async def _master_and_replicas(tag: str) -> tuple[int, list[int]]:
    """Ports of the master that serves ``tag``'s slot, as the seed node sees it, and of
    its replicas."""
    seed = Redis.from_url(REDIS_CLUSTER_URL, decode_responses=True)
    try:
        slot = int(await seed.execute_command("CLUSTER", "KEYSLOT", tag))
        nodes = str(await seed.execute_command("CLUSTER", "NODES"))
    finally:
        await seed.aclose()
    lines = [line.split() for line in nodes.splitlines() if line.strip()]

    def port(fields: list[str]) -> int:
        return int(fields[1].split("@")[0].rsplit(":", 1)[1])

    for fields in lines:
        if "master" not in fields[2]:
            continue
        for span in fields[8:]:
            low, _, high = span.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return port(fields), [port(f) for f in lines if f[3] == fields[0]]
    raise AssertionError(f"no master serves slot {slot}")


async def test_a_master_failover_during_a_run_loses_no_job_and_records_none_twice(
    tag: str, tmp_path: Path
) -> None:
    app = cluster_app(tag, tmp_path, keep_completed=0)
    runner = app.create_runner()
    await runner.start()
    produced: set[str] = set()
    try:
        _, [replica, *_] = await _master_and_replicas(tag)
        service = app.worker_service

        async def produce(start: int, count: int) -> None:
            # A fixed jobId per job: an add retried after an error cannot add it twice.
            for n in range(start, start + count):
                for _ in range(60):
                    try:
                        await service.queue_job(TickJob, {"n": n}, jobId=f"job-{n}")
                        break
                    except Exception:  # the failover: the cluster answers again soon
                        await asyncio.sleep(0.5)
                else:
                    raise AssertionError(f"job-{n} could not be added within 30 s")
                produced.add(f"default:job-{n}")
                await asyncio.sleep(0.002)

        producing = asyncio.create_task(produce(0, 1500))
        await eventually(lambda: _some_recorded(tmp_path), timeout=20)
        port = Redis(host="127.0.0.1", port=replica, decode_responses=True)
        try:
            assert await port.execute_command("CLUSTER", "FAILOVER")

            async def promoted() -> bool:
                return (await port.info("replication")).get("role") == "master"

            await eventually(promoted, timeout=20)
        finally:
            await port.aclose()

        async def seen_by_all() -> bool:  # the seed node knows the new master too
            return (await _master_and_replicas(tag))[0] == replica

        await eventually(seen_by_all, timeout=20)
        await producing
        await eventually(lambda: all_recorded(tmp_path, produced), timeout=60)
    finally:
        await runner.stop(grace=5)
        await app.stop()
    ids = recorded_ids(tmp_path)
    assert len(produced) == 1500
    assert len(ids) == len(set(ids)), "a job was recorded twice"
    assert set(ids) == produced


async def _some_recorded(tmp_path: Path) -> bool:
    return len(recorded_ids(tmp_path)) >= 100


async def test_cron_and_the_recorder_leader_with_two_runners_on_a_cluster(
    tag: str, tmp_path: Path
) -> None:
    from tests.integration import cron_app

    config = cluster_config(tag, tmp_path)
    apps = [create_app(config=config, enable_worker=True, registry=cron_app.registry) for _ in "ab"]
    runners = [app.create_runner() for app in apps]
    for runner in runners:
        await runner.start()
    try:
        await asyncio.sleep(4.5)
        roles = [runner.recording.roles() for runner in runners if runner.recording is not None]
    finally:
        for runner, app in zip(runners, apps, strict=True):
            await runner.stop(grace=5)
            await app.stop()
    # One recorder leader per queue across the two runners (the lease in the queue's slot).
    for queue in ("default", "cron-other"):
        assert sorted(r.get(queue, "") for r in roles) == ["follower", "leader"], roles
    client = RedisCluster.from_url(REDIS_CLUSTER_URL, decode_responses=True)
    try:
        runs = [json.loads(r) for r in await client.lrange(cron_app.runs_key(tag), 0, -1)]
    finally:
        await client.aclose()
    # Every second once, whichever runner took it: two runners firing each would make ~9.
    assert 3 <= len(runs) <= 6, runs


async def test_a_runner_refuses_a_job_queue_whose_keys_would_spread() -> None:
    from bullworker import BaseJob, JobRegistry, worker_job

    registry = JobRegistry()

    @worker_job(registry=registry)
    class Mail(BaseJob[dict[str, Any], None]):
        QUEUE_NAME = "emails"  # no tag, and none in the prefix

        async def handle(self, data: dict[str, Any]) -> None:
            return None

    config = AppConfig(
        environ={}, redis_url="redis://127.0.0.1:7100", redis_cluster=True, bull_queue="{q}",
        app_env="production",
    )  # fmt: skip
    app = create_app(config=config, enable_worker=True, registry=registry)
    with pytest.raises(ConfigError, match="'emails'"):
        await app.create_runner().start()
    await app.stop()
