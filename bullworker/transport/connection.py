"""Every Redis connection is built here, one way.

redis-py 8 defaults to ``socket_timeout=5``, shorter than BullMQ's blocking
reads (5 s BZPOPMIN, 10 s XREAD): idle workers then pick jobs up late and an
idle ``QueueEvents`` dies. bullworker therefore always hands bullmq a kwargs
dict with ``socket_timeout=None`` (and keepalive to notice dead peers) instead
of a URL, and never a shared client (the Worker would block on it).

Two more things bullmq's clients need (see docs/reliability.md):

- bullmq gives each client ``Retry(ExponentialBackoff(cap=20, base=1), 20)``:
  after a Redis restart a worker waits up to 20 s before its next try.
  :func:`use_retry_policy` swaps in bullworker's policy (at most 1 s apart).
- bullmq clients hold one connection for life (``single_connection_client``),
  and redis-py reconnects such a connection to the address it had, so with
  Sentinel they never followed a failover. Sentinel pools here use a
  connection that asks the sentinels for the master on every (re)connect and
  checks, at most every ``master_check_interval`` seconds, that it still
  talks to the master the sentinels name.

Refused credentials (of Redis or of the sentinels), refused certificates and
unloadable TLS files (see :mod:`bullworker.tls`) fail at once: no retry helps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.config.settings import AppConfig, RedisSettings
from bullworker.config.tls import client_tls
from bullworker.core.errors import ConfigError
from bullworker.transport.bullmq_compat import flow_producer_client, queue_client
from bullworker.transport.bullmq_compat.lane import close_add_lane, use_add_lane
from bullworker.transport.tls import TLSConnection, tls_refusal_in

_SCHEMES = ("redis", "rediss", "unix")
T = TypeVar("T")

#: A command that failed on a connection error is tried again after 0.2, 0.4,
#: 0.8 s and then every second, 30 times (about 28 s); the bullmq Worker's own
#: loop then goes on every ``runRetryDelay``.
RETRY_BASE = 0.1
RETRY_CAP = 1.0
RETRY_COUNT = 30
RETRY_ERRORS = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
#: A sentinel that does not answer is tried again after 0.2, 0.4 and 0.8 s, then the next one.
SENTINEL_RETRY_COUNT = 3


class _Retry(Retry):
    """redis-py's Retry, except that refused credentials or certificates are not tried again."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            # redis-py wraps what a Sentinel connection's _connect() raises in a ConnectionError.
            if isinstance(error, AuthenticationError) or isinstance(
                error.__context__, AuthenticationError
            ):
                return False
            if tls_refusal_in(error):
                return False
            return is_retryable is None or is_retryable(error)

        return await super().call_with_retry(do, fail, retryable, with_failure_count)


def retry_policy() -> Retry:
    """How bullworker's connections retry a command after a connection error."""
    backoff = ExponentialBackoff(cap=RETRY_CAP, base=RETRY_BASE)
    return _Retry(backoff, RETRY_COUNT, supported_errors=RETRY_ERRORS)


def sentinel_retry_policy() -> Retry:
    """How a client of one sentinel retries: briefly, since the next sentinel may answer."""
    backoff = ExponentialBackoff(cap=RETRY_CAP, base=RETRY_BASE)
    return _Retry(backoff, SENTINEL_RETRY_COUNT, supported_errors=RETRY_ERRORS)


def use_retry_policy(client: Any) -> None:
    """Give a client that bullmq built bullworker's retry policy instead of its own.

    bullmq passes ``retry=`` to ``redis.Redis`` itself (a ``retry`` of ours in the
    connection kwargs would be a duplicate argument); redis-py reads it from the
    pool's ``connection_kwargs`` whenever it opens a connection. Over TLS the pool
    also opens :class:`~bullworker.tls.TLSConnection`, so a refused client
    certificate is not mistaken for an outage and tried again.
    """
    pool = client.connection_pool
    pool.connection_kwargs["retry"] = retry_policy()
    pool.set_retry(retry_policy())
    if pool.connection_class is SSLConnection:
        pool.connection_class = TLSConnection


class _Sentinel(Sentinel):
    """Names no master while a failover is in progress, and says why it found none.

    The old master still accepts writes until the sentinels reconfigure it, and
    then drops them; a command waits (retries) for the new master instead.
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """The master's address from the first sentinel that names one.

        As redis-py's, except that the errors read well, and that credentials
        refused by a sentinel raise AuthenticationError (not tried again)
        instead of a MasterNotFoundError that waits for a master in vain.
        """
        failures: list[str] = []
        refused: list[str] = []
        for index, sentinel in enumerate(self.sentinels):
            where = sentinel.connection_pool.connection_kwargs
            name = f"sentinel {where.get('host')}:{where.get('port')}"
            try:
                masters = await sentinel.sentinel_masters()
            except AuthenticationError as exc:
                given = self.sentinel_kwargs.get("password") is not None
                whom = "the credentials" if given else "a client without credentials"
                refused.append(f"{name} refused {whom}: {exc}")
                continue
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            if isinstance(masters, dict):
                state = masters.get(service_name)
            else:  # a list of states under RESP3
                state = next((m for m in masters if m.get("name") == service_name), None)
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                forced = getattr(self, "_force_master_ip", None)
                return (forced if forced is not None else state["ip"]), int(state["port"])
        if refused:
            raise AuthenticationError(
                "; ".join(refused) + " (check REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD)"
            )
        raise MasterNotFoundError(
            f"No master found for {service_name!r}" + "".join(f"; {f}" for f in failures)
        )

    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        flags = state.get("flags", "")
        if "failover_in_progress" in (flags.split(",") if isinstance(flags, str) else flags):
            return False
        return bool(super().check_master_state(state, service_name))


class _SentinelPool(SentinelConnectionPool):
    """A Sentinel pool that closes its sentinel clients too."""

    def __init__(self, *args: Any, master_check_interval: float, **kwargs: Any) -> None:
        self.master_check_interval = master_check_interval
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _SentinelConnection(SentinelManagedConnection):
    """Follows the master the sentinels name, also as a single long-lived connection."""

    _checked_at = 0.0

    async def _connect(self) -> None:
        # redis-py reconnects a dropped connection through _connect() with the old
        # address, not through connect(): ask the sentinels here, every time.
        pool = self.connection_pool
        if pool.is_master:
            self.host, self.port = await pool.get_master_address()
            self._checked_at = time.monotonic()
        await super()._connect()  # type: ignore[no-untyped-call]

    async def check_health(self) -> None:
        await super().check_health()  # type: ignore[no-untyped-call]
        pool = self.connection_pool
        if not pool.is_master or time.monotonic() - self._checked_at < pool.master_check_interval:
            return
        address = tuple(await pool.get_master_address())
        self._checked_at = time.monotonic()
        if address != (self.host, self.port):  # a failover: this one is no longer the master
            await self.disconnect()
            raise RedisConnectionError(f"the Redis master moved to {address[0]}:{address[1]}")


class _SentinelSSLConnection(_SentinelConnection, TLSConnection):
    pass


def _from_url(url: str, setting: str = "REDIS_URL") -> dict[str, Any]:
    """redis-py keyword arguments of ``url``; ConfigError naming ``setting`` if it is bad."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(
            f"Redis URL must start with redis://, rediss:// or unix:// (got {parts.scheme}://): "
            f"check {setting}"
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
        try:
            opts["port"] = parts.port or 6379
        except ValueError:
            raise ConfigError(f"Redis URL has an invalid port: check {setting}") from None
        db = parts.path.lstrip("/") or query.get("db", ["0"])[0]
    try:
        opts["db"] = int(db)
    except ValueError:
        raise ConfigError(
            f"Redis URL has an invalid database number {db!r}: check {setting}"
        ) from None
    if parts.scheme == "rediss":
        opts["ssl"] = True  # the ssl_* options of the query: see client_tls()
    return opts


def connection_kwargs(
    settings: RedisSettings, *, master_check_interval: float = 1.0
) -> dict[str, Any]:
    """redis-py keyword arguments for one connection to ``settings``.

    ``master_check_interval`` (Sentinel only): seconds between two checks that a
    connection still talks to the current master; 0 checks before every command.
    """
    base: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": settings.timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }
    tls = client_tls(settings)
    if settings.sentinel_host:
        # The sentinels' own credentials; the data nodes get REDIS_USERNAME/REDIS_PASSWORD.
        sentinel_kwargs = {
            "socket_timeout": settings.timeout,
            "socket_connect_timeout": settings.timeout,
            "username": settings.sentinel_username,
            "password": settings.sentinel_password,
            "retry": sentinel_retry_policy(),
        }
        sentinel = _Sentinel(
            [(settings.sentinel_host, settings.sentinel_port)], sentinel_kwargs=sentinel_kwargs
        )
        pool = _SentinelPool(
            settings.sentinel_name,
            sentinel,
            master_check_interval=master_check_interval,
            connection_class=_SentinelSSLConnection if settings.tls else _SentinelConnection,
            decode_responses=True,
            db=settings.db,
            retry=retry_policy(),
            retry_on_error=list(RETRY_ERRORS),
            username=settings.username,
            password=settings.password,
            **tls,
            **base,
        )
        return {"connection_pool": pool}
    if settings.url:
        return {**base, **_from_url(settings.url, settings.source or "REDIS_URL"), **tls}
    opts = {
        **base,
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "username": settings.username,
        "password": settings.password,
        **tls,
    }
    if settings.tls:
        opts["ssl"] = True
    return opts


def bullmq_connection(
    settings: RedisSettings, *, master_check_interval: float = 0.0
) -> dict[str, Any]:
    """The ``connection`` option for a bullmq Queue, Worker or QueueEvents.

    Each call returns a new dict, so every bullmq object opens its own sockets.
    With Sentinel the default checks the master before every command, so that
    a producer never writes to a demoted master (its writes would be lost).
    """
    return connection_kwargs(settings, master_check_interval=master_check_interval)


def open_queue(config: AppConfig, name: str) -> Any:
    """A bullmq Queue on the queues' Redis (``BULL_REDIS_*``), built the one way.

    Its client gets bullworker's retry policy, so refused credentials fail at once
    and an outage is retried every second rather than with backoff up to 20 s.
    """
    from bullmq import Queue

    settings = config.redis_settings("bull")
    queue = Queue(name, {"prefix": config.bull_prefix, "connection": bullmq_connection(settings)})
    use_retry_policy(queue_client(queue))
    use_add_lane(queue)
    return queue


async def close_queue(queue: Any, seconds: float) -> None:
    """Close a Queue of :func:`open_queue`, and the Sentinel pool bullmq leaves open."""
    try:
        await asyncio.wait_for(queue.close(), seconds)
    finally:
        await close_add_lane(queue)
        await close_sentinel_pool(queue_client(queue))


def open_flow_producer(config: AppConfig) -> Any:
    """A bullmq FlowProducer on the queues' Redis, built as :func:`open_queue` builds a Queue."""
    from bullmq import FlowProducer

    settings = config.redis_settings("bull")
    producer = FlowProducer(
        {"prefix": config.bull_prefix, "connection": bullmq_connection(settings)}
    )
    use_retry_policy(flow_producer_client(producer))
    return producer


async def close_flow_producer(producer: Any, seconds: float) -> None:
    """Close a FlowProducer of :func:`open_flow_producer` (and a Sentinel pool it leaves open)."""
    try:
        await asyncio.wait_for(producer.close(), seconds)
    finally:
        await close_sentinel_pool(flow_producer_client(producer))


async def close_sentinel_pool(client: Any) -> None:
    """Close the Sentinel pool handed to a bullmq client, which leaves it open."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, _SentinelPool):
        await pool.aclose()


def redis_client(settings: RedisSettings) -> aioredis.Redis:
    """A pooled client for bullworker's own commands (leader, recorder, CLI)."""
    kwargs = connection_kwargs(settings)
    pool = kwargs.pop("connection_pool", None)
    if pool is not None:
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool
    client = aioredis.Redis(decode_responses=True, retry=retry_policy(), **kwargs)
    use_retry_policy(client)
    return client
