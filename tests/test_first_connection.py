"""The first connection of a command: refused, unknown or silent Redis is said at once."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from bullworker import AppConfig, QueueUnavailable
from bullworker.config.settings import RedisSettings
from bullworker.transport import probe
from bullworker.transport.probe import check_reachable, unreachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_listening_server_is_reachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert await unreachable(RedisSettings(host="127.0.0.1", port=port)) is None


async def test_refused_at_once_with_what_to_check() -> None:
    port = _closed_port()
    settings = AppConfig(environ={"REDIS_URL": f"redis://u:pw@127.0.0.1:{port}/0"}).redis_settings()
    started = time.monotonic()
    with pytest.raises(QueueUnavailable) as caught:
        await check_reachable(settings)
    assert time.monotonic() - started < 0.5
    assert str(caught.value) == (
        f"cannot connect to Redis at redis://u:***@127.0.0.1:{port}/0: connection refused; "
        "is redis-server running there? check REDIS_URL"
    )


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({}, "REDIS_HOST and REDIS_PORT"),
        ({"REDIS_URL": "redis://r:1/0"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://r:1/0", "BULL_REDIS_URL": "redis://q:1/0"}, "BULL_REDIS_URL"),
        ({"BULL_REDIS_HOST": "q"}, "BULL_REDIS_HOST and BULL_REDIS_PORT"),
        ({"REDIS_SENTINEL_HOST": "s"}, "REDIS_SENTINEL_HOST and REDIS_SENTINEL_PORT"),
    ],
)
def test_the_hint_names_the_setting_in_use(environ: dict[str, str], source: str) -> None:
    assert AppConfig(environ=environ).redis_settings().source == source


async def test_an_unknown_host() -> None:
    settings = RedisSettings(url="redis://no-such-host.invalid:6379/0")
    assert await unreachable(settings) == "unknown host 'no-such-host.invalid'"


async def test_no_socket_file(tmp_path: Path) -> None:
    settings = RedisSettings(url=f"unix://{tmp_path}/redis.sock")
    assert await unreachable(settings) == f"no socket {tmp_path}/redis.sock"


async def test_no_connection_within_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hangs(address: object) -> None:
        await asyncio.sleep(30)

    monkeypatch.setattr(probe, "_connect", hangs)
    monkeypatch.setattr(probe, "FIRST_CONNECT_TIMEOUT", 0.2)
    started = time.monotonic()
    assert await unreachable(RedisSettings(timeout=10)) == "no connection within 0.2 s"
    assert await unreachable(RedisSettings(timeout=0.1)) == "no connection within 0.1 s"
    assert time.monotonic() - started < 1.0
