"""LeaderService against a real Redis (and, for outages, a private redis-server)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.transport.leader import LeaderError, LeaderService

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class Events:
    """Counts (and timestamps) the callbacks of one service."""

    def __init__(self, fail_became: int = 0, fail_lost: bool = False) -> None:
        self.became: list[float] = []
        self.lost: list[float] = []
        self.leader_during_lost: list[bool] = []
        self.fail_became = fail_became
        self.fail_lost = fail_lost
        self.service: LeaderService | None = None

    async def on_became(self) -> None:
        self.became.append(time.monotonic())
        if len(self.became) <= self.fail_became:
            raise RuntimeError("on_became failed on purpose")

    async def on_lost(self) -> None:
        self.lost.append(time.monotonic())
        if self.service is not None:
            self.leader_during_lost.append(self.service.is_leader)
        if self.fail_lost:
            raise RuntimeError("on_lost failed on purpose")


async def wait_until(predicate: Callable[[], bool], within: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], within: float, step: float = 0.02
) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return await predicate()


Factory = Callable[..., tuple[LeaderService, Events]]


@pytest.fixture
async def make(redis_client: aioredis.Redis) -> AsyncIterator[Factory]:
    """Build services with short timings; every one is stopped after the test."""
    services: list[LeaderService] = []

    def factory(
        key: str, *, client: aioredis.Redis | None = None, events: Events | None = None, **kw: Any
    ) -> tuple[LeaderService, Events]:
        ev = events or Events()
        options: dict[str, Any] = {"ttl": 1.0, "renew_interval": 0.2, "retry_delay": 0.1}
        options.update(kw)
        svc = LeaderService(
            client or redis_client, key, on_became=ev.on_became, on_lost=ev.on_lost, **options
        )
        ev.service = svc
        services.append(svc)
        return svc, ev

    yield factory
    for svc in services:
        await svc.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def private_redis() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A throw-away redis-server the test may stop or kill."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("private redis-server did not start") from None
                time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
async def private_client(
    private_redis: tuple[subprocess.Popen[bytes], int],
) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(
        host="127.0.0.1", port=private_redis[1], decode_responses=True, socket_connect_timeout=0.5
    )
    yield client
    await client.aclose()


# -- tests ------------------------------------------------------------------------


async def test_acquires(prefix: str, redis_client: aioredis.Redis, make: Factory) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key)
    assert not svc.is_leader and svc.leader_since is None
    before = time.time()
    await svc.start()
    assert await wait_until(lambda: len(ev.became) >= 1, 0.5)
    assert svc.is_leader
    assert svc.leader_since is not None and before <= svc.leader_since <= time.time()
    assert len(svc.token) == 32
    assert await redis_client.get(key) == svc.token
    assert 0 < await redis_client.pttl(key) <= 1000
    await asyncio.sleep(0.3)
    assert len(ev.became) == 1 and ev.lost == []


async def test_second_start_raises(prefix: str, make: Factory) -> None:
    svc, _ = make(keys.leader_key(prefix, "q"))
    await svc.start()
    with pytest.raises(LeaderError, match="already running"):
        await svc.start()


async def test_stop_is_idempotent_and_safe_without_start(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key)
    await svc.stop()
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 1.0)
    await svc.stop()
    await svc.stop()
    assert not svc.is_leader and svc.leader_since is None
    assert await redis_client.exists(key) == 0
    assert ev.lost == []
    await svc.start()  # can be restarted after stop()
    assert await wait_until(lambda: svc.is_leader, 1.0)
    assert len(ev.became) == 2


async def test_rejects_bad_timings(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError):
        LeaderService(redis_client, "k", ttl=0)
    with pytest.raises(ValueError):
        LeaderService(redis_client, "k", ttl=1.0, renew_interval=1.0)


async def test_two_candidates_only_first_leads(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    first, ev1 = make(key)
    second, ev2 = make(key)
    await first.start()
    assert await wait_until(lambda: first.is_leader, 0.5)
    await second.start()
    await asyncio.sleep(1.2)
    assert first.is_leader and not second.is_leader
    assert len(ev1.became) == 1 and ev2.became == [] and ev1.lost == []
    assert await redis_client.get(key) == first.token


async def test_handover_on_stop(prefix: str, redis_client: aioredis.Redis, make: Factory) -> None:
    key = keys.leader_key(prefix, "q")
    first, ev1 = make(key, ttl=2.0, renew_interval=0.3, retry_delay=0.2)
    second, ev2 = make(key, ttl=2.0, renew_interval=0.3, retry_delay=0.2)
    await first.start()
    assert await wait_until(lambda: first.is_leader, 0.5)
    await second.start()
    await asyncio.sleep(0.3)
    stopped = time.monotonic()
    await first.stop()
    assert not first.is_leader
    assert await redis_client.get(key) != first.token
    assert await wait_until(lambda: second.is_leader, 0.2 + 0.3)
    assert ev2.became and ev2.became[0] - stopped <= 0.2 + 0.3
    assert await redis_client.get(key) == second.token
    assert ev1.lost == []


async def test_keeps_leadership_across_renewals(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key, ttl=1.0, renew_interval=0.25)
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 0.5)
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        assert svc.is_leader
        assert await redis_client.pttl(key) > 0
        await asyncio.sleep(0.1)
    assert await redis_client.get(key) == svc.token
    assert len(ev.became) == 1 and ev.lost == []


async def test_takeover_after_dead_holder(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    await redis_client.set(key, "dead-holder", px=1500)  # never renewed, never released
    svc, ev = make(key, ttl=1.0, retry_delay=0.1)
    started = time.monotonic()
    await svc.start()
    await asyncio.sleep(1.0)
    assert not svc.is_leader and ev.became == []
    assert await wait_until(lambda: svc.is_leader, 1.5)
    assert 1.4 <= ev.became[0] - started <= 1.5 + 0.1 + 0.4
    assert await redis_client.get(key) == svc.token


async def test_overwritten_token_loses_then_reacquires(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key, ttl=1.0, renew_interval=0.2, retry_delay=0.1)
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 0.5)
    await redis_client.set(key, "usurper", px=1000)
    overwritten = time.monotonic()
    assert await wait_until(lambda: len(ev.lost) == 1, 0.2 + 0.4)
    assert ev.leader_during_lost == [False]
    assert not svc.is_leader
    assert await redis_client.get(key) == "usurper"  # best-effort release spared it
    assert await wait_until(lambda: len(ev.became) == 2, 1.0 + 0.1 + 0.6)
    assert ev.became[1] - overwritten >= 0.9
    assert svc.is_leader and len(ev.lost) == 1
    assert await redis_client.get(key) == svc.token


async def test_independent_keys_both_lead(prefix: str, make: Factory) -> None:
    a, _ = make(keys.leader_key(prefix, "a"))
    b, _ = make(keys.leader_key(prefix, "b"))
    await a.start()
    await b.start()
    assert await wait_until(lambda: a.is_leader and b.is_leader, 1.0)
    assert a.token != b.token


async def test_stopped_candidate_never_leads(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    holder, _ = make(key)
    waiting, ev = make(key)
    await holder.start()
    assert await wait_until(lambda: holder.is_leader, 0.5)
    await waiting.start()
    await asyncio.sleep(0.3)
    await waiting.stop()
    await holder.stop()
    assert await redis_client.exists(key) == 0
    await asyncio.sleep(0.6)  # many retry_delays
    assert ev.became == [] and not waiting.is_leader
    assert await redis_client.exists(key) == 0


async def test_on_became_failure_steps_down(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key, events=Events(fail_became=1), retry_delay=0.6)
    await svc.start()
    assert await wait_until(lambda: len(ev.became) == 1, 0.5)
    assert await wait_until_async(lambda: _absent(redis_client, key), 0.4)
    assert len(ev.became) == 1 and not svc.is_leader and svc.leader_since is None
    assert await wait_until(lambda: len(ev.became) == 2, 0.6 + 0.5)
    assert ev.became[1] - ev.became[0] >= 0.55
    assert await wait_until(lambda: svc.is_leader, 0.2)
    assert await redis_client.get(key) == svc.token
    assert ev.lost == []


async def test_lease_expires_while_on_became_is_slow(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    ev = Events()
    release = asyncio.Event()
    record = ev.on_became

    async def slow_became() -> None:
        await record()
        await release.wait()

    ev.on_became = slow_became  # type: ignore[method-assign]
    svc, _ = make(key, events=ev, ttl=1.0, renew_interval=0.2)
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 0.5)
    await asyncio.sleep(1.0)  # no renewal while on_became runs: the lease ran out
    assert not svc.is_leader and len(ev.became) == 1
    release.set()
    assert await wait_until(lambda: len(ev.lost) == 1, 0.5)
    assert await wait_until(lambda: len(ev.became) == 2, 1.0)


async def _absent(client: aioredis.Redis, key: str) -> bool:
    return await client.exists(key) == 0


async def test_failing_on_lost_does_not_kill_the_loop(
    prefix: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    key = keys.leader_key(prefix, "q")
    svc, ev = make(key, events=Events(fail_lost=True))
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 0.5)
    await redis_client.set(key, "usurper", px=300)
    assert await wait_until(lambda: len(ev.lost) == 1, 0.6)
    assert await wait_until(lambda: len(ev.became) == 2, 1.0)
    assert svc.is_leader


async def test_redis_killed_loses_leadership(
    prefix: str,
    private_redis: tuple[subprocess.Popen[bytes], int],
    private_client: aioredis.Redis,
    make: Factory,
) -> None:
    ttl = 2.0
    svc, ev = make(f"{prefix}:leader", client=private_client, ttl=ttl, renew_interval=0.3)
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 1.0)
    await asyncio.sleep(0.5)  # at least one renewal on the private server
    private_redis[0].kill()
    killed = time.monotonic()
    assert await wait_until(lambda: not svc.is_leader, ttl)
    assert time.monotonic() - killed < ttl  # before the lease could have expired
    assert await wait_until(lambda: len(ev.lost) == 1, ttl + 0.5)
    assert ev.lost[0] - killed <= ttl
    assert ev.leader_during_lost == [False]
    await asyncio.sleep(0.5)  # candidate keeps retrying without crashing
    assert len(ev.lost) == 1 and len(ev.became) == 1 and not svc.is_leader


async def test_hung_redis_loses_leadership_at_lease_deadline(
    prefix: str,
    private_redis: tuple[subprocess.Popen[bytes], int],
    private_client: aioredis.Redis,
    make: Factory,
) -> None:
    ttl = 1.5
    svc, ev = make(f"{prefix}:leader", client=private_client, ttl=ttl, renew_interval=0.3)
    await svc.start()
    assert await wait_until(lambda: svc.is_leader, 1.0)
    await asyncio.sleep(0.4)
    os.kill(private_redis[0].pid, signal.SIGSTOP)  # renewals now hang, no error
    frozen = time.monotonic()
    assert await wait_until(lambda: len(ev.lost) == 1, ttl + 0.5)
    assert ev.lost[0] - frozen <= ttl
    assert ev.leader_during_lost == [False]
    private_redis[0].kill()  # let the teardown's release fail fast
