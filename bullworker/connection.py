"""Every Redis connection is built here, one way.

redis-py 8 defaults to ``socket_timeout=5``, shorter than BullMQ's blocking
reads (5 s BZPOPMIN, 10 s XREAD): idle workers then pick jobs up late and an
idle ``QueueEvents`` dies. bullworker therefore always hands bullmq a kwargs
dict with ``socket_timeout=None`` (and keepalive to notice dead peers) instead
of a URL, and never a shared client (the Worker would block on it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis

from .config import RedisSettings
from .errors import ConfigError

_SCHEMES = ("redis", "rediss", "unix")


def _from_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"Redis URL must start with redis://, rediss:// or unix:// (got {parts.scheme}://)"
        )
    opts: dict[str, Any] = {}
    if parts.username:
        opts["username"] = unquote(parts.username)
    if parts.password:
        opts["password"] = unquote(parts.password)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        opts["unix_socket_path"] = parts.path
        db = query.get("db", ["0"])[0]
    else:
        opts["host"] = parts.hostname or "127.0.0.1"
        opts["port"] = parts.port or 6379
        db = parts.path.lstrip("/") or query.get("db", ["0"])[0]
    try:
        opts["db"] = int(db)
    except ValueError:
        raise ConfigError(f"Redis URL has an invalid database number {db!r}") from None
    if parts.scheme == "rediss":
        opts["ssl"] = True
        if "ssl_cert_reqs" in query:
            opts["ssl_cert_reqs"] = query["ssl_cert_reqs"][0]
        if "ssl_ca_certs" in query:
            opts["ssl_ca_certs"] = query["ssl_ca_certs"][0]
    return opts


def connection_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """redis-py keyword arguments for one connection to ``settings``."""
    base: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": settings.timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    if settings.sentinel_host:
        from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

        auth = {"username": settings.username, "password": settings.password}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [(settings.sentinel_host, settings.sentinel_port)],
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
        )
        pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            settings.sentinel_name,
            sentinel,
            decode_responses=True,
            db=settings.db,
            ssl=settings.tls,
            **auth,
            **base,
        )
        return {"connection_pool": pool}
    if settings.url:
        return {**base, **_from_url(settings.url)}
    opts = {
        **base,
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "username": settings.username,
        "password": settings.password,
    }
    if settings.tls:
        opts["ssl"] = True
    return opts


def bullmq_connection(settings: RedisSettings) -> dict[str, Any]:
    """The ``connection`` option for a bullmq Queue, Worker or QueueEvents.

    Each call returns a new dict, so every bullmq object opens its own sockets.
    """
    return connection_kwargs(settings)


def redis_client(settings: RedisSettings) -> aioredis.Redis:
    """A pooled client for bullworker's own commands (leader, recorder, CLI)."""
    return aioredis.Redis(decode_responses=True, **connection_kwargs(settings))
