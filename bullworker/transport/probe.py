"""The first connection of a command or of a runner's start: Redis refused is said at once.

bullworker's clients retry a failed connection for about 28 s (see `connection`), which
carries a running runner through a Redis restart but would make a command whose Redis
is not there wait for REDIS_TIMEOUT and then only say that Redis did not answer.
:func:`check_reachable` opens one plain TCP connection first, without retry: a refused
connection, an unknown host or no route fail at once, and no connection within
:data:`FIRST_CONNECT_TIMEOUT` (or REDIS_TIMEOUT if lower) fails then. A server that
accepts the connection but does not answer is left to the calls that follow, which
give up after REDIS_TIMEOUT; TLS and credentials are checked by them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

import redis.asyncio as aioredis

from bullworker.config.settings import RedisSettings
from bullworker.core.errors import QueueUnavailable
from bullworker.transport.connection import _from_url, redis_client

#: Seconds the first connection may take at most (REDIS_TIMEOUT if lower).
FIRST_CONNECT_TIMEOUT = 2.0


def redis_address(settings: RedisSettings) -> tuple[str, int] | str:
    """``(host, port)`` the first connection goes to (the sentinel's, with Sentinel), or a
    socket path."""
    if settings.sentinel_host:
        return settings.sentinel_host, settings.sentinel_port
    if settings.url:
        opts = _from_url(settings.url, settings.source or "REDIS_URL")
        if "unix_socket_path" in opts:
            return str(opts["unix_socket_path"])
        return str(opts["host"]), int(opts["port"])
    return settings.host, settings.port


async def unreachable(settings: RedisSettings) -> str | None:
    """Why one TCP connection to Redis (or its sentinel) cannot be made, or None once it
    was (and closed): ``connection refused``, ``unknown host 'x'``..."""
    timeout = min(settings.timeout, FIRST_CONNECT_TIMEOUT)
    address = redis_address(settings)
    try:
        async with asyncio.timeout(timeout):
            return await _connect(address)
    except TimeoutError:
        return f"no connection within {timeout:g} s"


async def check_reachable(settings: RedisSettings) -> None:
    """QueueUnavailable, saying why and what to check, if `unreachable`."""
    reason = await unreachable(settings)
    if reason is None:
        return
    if settings.sentinel_host:
        running, source = "redis-sentinel", "REDIS_SENTINEL_HOST and REDIS_SENTINEL_PORT"
    else:
        running = "redis-server"
        source = "REDIS_URL" if settings.url else "REDIS_HOST and REDIS_PORT"
    check = f"check {settings.source or source}"
    if not reason.startswith("unknown host"):
        check = f"is {running} running there? {check}"
    raise QueueUnavailable(f"cannot connect to Redis at {settings.describe()}: {reason}; {check}")


async def reachable_client(settings: RedisSettings) -> aioredis.Redis:
    """`redis_client` of ``settings``, once `check_reachable` found the server there."""
    await check_reachable(settings)
    return redis_client(settings)


async def _connect(address: tuple[str, int] | str) -> str | None:
    """None once connected, else why not."""
    if isinstance(address, str):
        try:
            _, writer = await asyncio.open_unix_connection(address)
        except FileNotFoundError:
            return f"no socket {address}"
        except OSError as exc:
            return _why(exc)
        await _close(writer)
        return None
    host, port = address
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"unknown host {host!r}"
    failures: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:  # e.g. ::1, then 127.0.0.1 for localhost
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            failures.append(exc)
        else:
            return None
        finally:
            sock.close()
    if any(exc.errno == errno.ECONNREFUSED for exc in failures):
        return "connection refused"
    return _why(failures[-1]) if failures else f"unknown host {host!r}"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
