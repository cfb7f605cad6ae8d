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

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.config.redis_settings import require_hash_tag
from bullworker.config.settings import AppConfig, RedisSettings
from bullworker.config.tls import client_tls
from bullworker.core.errors import ConfigError
from bullworker.core.tasks import within
from bullworker.transport.bullmq_compat import flow_producer_client, queue_client
from bullworker.transport.bullmq_compat.cluster import ScriptingCluster
from bullworker.transport.bullmq_compat.lane import close_add_lane, use_add_lane
from bullworker.transport.sentinel import (
    _Sentinel,
    _SentinelConnection,
    _SentinelPool,
    _SentinelSSLConnection,
)
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
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # a cluster client: built with the policy (cluster_client)
        return
    pool.connection_kwargs["retry"] = retry_policy()
    pool.set_retry(retry_policy())
    if pool.connection_class is SSLConnection:
        pool.connection_class = TLSConnection


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


def cluster_client(settings: RedisSettings) -> RedisCluster:
    """A Redis Cluster client that discovers the cluster from the seed node of ``settings``.

    It keeps a pool per node, so a blocking read (BullMQ's BZPOPMIN) holds one
    connection of one node and the client's other commands go on; it follows
    ``MOVED`` and fails over by itself, retrying as :func:`retry_policy` says.
    """
    opts = connection_kwargs(settings)
    if "unix_socket_path" in opts:
        raise ConfigError(
            f"Redis Cluster needs a TCP address, not a unix:// socket: check {settings.source}"
        )
    opts.pop("db", None)  # a cluster has database 0 only (checked by the config)
    # redis-py's cluster client takes the TLS switch and options as its connections do.
    return ScriptingCluster(decode_responses=True, retry=retry_policy(), **opts)


def bullmq_connection(settings: RedisSettings, *, master_check_interval: float = 0.0) -> Any:
    """The ``connection`` option for a bullmq Queue, Worker or QueueEvents.

    Each call returns a new dict, so every bullmq object opens its own sockets.
    With Sentinel the default checks the master before every command, so that
    a producer never writes to a demoted master (its writes would be lost).
    With a Redis Cluster it is a new cluster client (bullmq takes a ready one).
    """
    if settings.cluster:
        return cluster_client(settings)
    return connection_kwargs(settings, master_check_interval=master_check_interval)


def open_queue(config: AppConfig, name: str) -> Any:
    """A bullmq Queue on the queues' Redis (``BULL_REDIS_*``), built the one way.

    Its client gets bullworker's retry policy, so refused credentials fail at once
    and an outage is retried every second rather than with backoff up to 20 s.
    """
    from bullmq import Queue

    settings = config.redis_settings("bull")
    if settings.cluster:
        require_hash_tag(config.bull_prefix, name)
    queue = Queue(name, {"prefix": config.bull_prefix, "connection": bullmq_connection(settings)})
    use_retry_policy(queue_client(queue))
    use_add_lane(queue)
    return queue


async def close_queue(queue: Any, seconds: float) -> None:
    """Close a Queue of :func:`open_queue`, and the Sentinel pool bullmq leaves open."""
    try:
        await within(queue.close(), seconds)
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
        await within(producer.close(), seconds)
    finally:
        await close_sentinel_pool(flow_producer_client(producer))


async def close_sentinel_pool(client: Any) -> None:
    """Close the Sentinel pool handed to a bullmq client, which leaves it open."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, _SentinelPool):
        await pool.aclose()


def redis_client(settings: RedisSettings) -> aioredis.Redis:
    """A pooled client for bullworker's own commands (leader, recorder, CLI).

    With a Redis Cluster it is a cluster client, typed as a plain one: bullworker's
    own commands are those both have (every key of a call in one slot).
    """
    if settings.cluster:
        return cast(aioredis.Redis, cluster_client(settings))
    kwargs = connection_kwargs(settings)
    pool = kwargs.pop("connection_pool", None)
    if pool is not None:
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool
    client = aioredis.Redis(decode_responses=True, retry=retry_policy(), **kwargs)
    use_retry_policy(client)
    return client
