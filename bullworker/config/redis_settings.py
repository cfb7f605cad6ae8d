"""Where and how to reach Redis: one server, a Sentinel group or a Cluster.

`scoped_redis_settings` turns an app's ``REDIS_*`` and ``BULL_REDIS_*`` settings
into one `RedisSettings`; `check_redis` refuses combinations that cannot work,
among them the Redis Cluster hash-tag rule (docs/configuration.md, "Redis Cluster"):
every key of a queue must hash to one slot, because BullMQ's scripts and
transactions touch several keys of a queue at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from bullworker.config.redaction import redact_url as redact
from bullworker.core import keys
from bullworker.core.errors import ConfigError


class _HasRedisSettings(Protocol):
    """An ``AppConfig`` as far as its Redis settings go (its ``redis_*`` attributes)."""

    redis_url: str | None
    redis_timeout: float


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Where and how to reach one Redis deployment."""

    url: str | None = None
    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    sentinel_host: str | None = None
    sentinel_port: int = 26379
    sentinel_name: str = "mymaster"
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    timeout: float = 10.0
    #: The address (``url`` or ``host``/``port``) is a seed node of a Redis Cluster.
    cluster: bool = False
    #: The settings that name this server (``REDIS_URL``...), for hints in errors.
    source: str = field(default="", compare=False)

    @property
    def uses_tls(self) -> bool:
        """Whether connections to the data nodes use TLS (``rediss://`` or ``tls``)."""
        if self.url and not self.sentinel_host:
            return self.url.partition("://")[0].lower() == "rediss"
        return self.tls

    def describe(self) -> str:
        """A human description without secrets, for logs and errors."""
        if self.sentinel_host:
            return f"sentinel {self.sentinel_host}:{self.sentinel_port} ({self.sentinel_name})"
        if self.url:
            where = redact(self.url)
        else:
            scheme = "rediss" if self.tls else "redis"
            where = f"{scheme}://{self.host}:{self.port}/{self.db}"
        return f"cluster seed {where}" if self.cluster else where

    def __repr__(self) -> str:
        return f"RedisSettings({self.describe()})"


def scoped_redis_settings(config: _HasRedisSettings, scope: str | None = "bull") -> RedisSettings:
    """Redis settings for a scope: ``BULL_REDIS_*`` keys win over ``REDIS_*``."""

    def scoped(key: str) -> Any:
        return getattr(config, f"{scope}_redis_{key}", None) if scope else None

    def pick(key: str) -> Any:
        value = scoped(key)
        return value if value is not None else getattr(config, f"redis_{key}")

    scoped_url, scoped_host, scoped_sentinel = (
        scoped("url"),
        scoped("host"),
        scoped("sentinel_host"),
    )
    sentinel = pick("sentinel_host")
    if (scoped_url or scoped_host) and scoped_sentinel is None:
        sentinel = None  # a scoped address beats a global sentinel
    url = scoped_url if scoped_url or scoped_host else config.redis_url
    if sentinel:
        env = f"{scope.upper()}_" if scope and scoped_sentinel is not None else ""
        source = f"{env}REDIS_SENTINEL_HOST and {env}REDIS_SENTINEL_PORT"
    elif url:
        source = f"{scope.upper()}_REDIS_URL" if scope and scoped_url else "REDIS_URL"
    else:
        env = f"{scope.upper()}_" if scope and scoped_host else ""
        source = f"{env}REDIS_HOST and {env}REDIS_PORT"
    return RedisSettings(
        url=None if sentinel else url,
        host=pick("host"),
        port=pick("port"),
        username=pick("username"),
        password=pick("password"),
        db=pick("db"),
        tls=pick("tls"),
        tls_ca_file=pick("tls_ca_file"),
        tls_cert_file=pick("tls_cert_file"),
        tls_key_file=pick("tls_key_file"),
        sentinel_host=sentinel,
        sentinel_port=pick("sentinel_port"),
        sentinel_name=pick("sentinel_name"),
        sentinel_username=pick("sentinel_username"),
        sentinel_password=pick("sentinel_password"),
        timeout=config.redis_timeout,
        cluster=bool(pick("cluster")),
        source=source,
    )


def _database(settings: RedisSettings) -> str:
    """The database number the settings name, as written ("" for none)."""
    if not settings.url:
        return str(settings.db)
    parts = urlsplit(settings.url)
    return parts.path.lstrip("/") or parse_qs(parts.query).get("db", [""])[0]


def _cluster_setting(scope: str | None, config: object) -> str:
    scoped = scope and getattr(config, f"{scope}_redis_cluster", None) is not None
    return f"{scope.upper()}_REDIS_CLUSTER" if scope and scoped else "REDIS_CLUSTER"


def check_redis(
    config: _HasRedisSettings, scope: str | None, prefix: str, queues: Iterable[str]
) -> None:
    """ConfigError for Redis settings that cannot work: Sentinel and Cluster together, a
    database other than 0 on a Cluster, or queues whose keys a Cluster would spread."""
    settings = scoped_redis_settings(config, scope)
    if not settings.cluster:
        return
    name = _cluster_setting(scope, config)
    if settings.sentinel_host:
        raise ConfigError(
            f"{name}=true and {settings.source} are set together: a Redis Cluster has no "
            "Sentinel (it fails over by itself); set one or the other"
        )
    if _database(settings) not in ("0", ""):
        raise ConfigError(
            f"{name}=true: a Redis Cluster has only database 0 (check {settings.source})"
        )
    for queue in queues:
        require_hash_tag(prefix, queue)


def require_hash_tag(prefix: str, queue: str) -> str:
    """The hash tag all keys of ``queue`` share, or a ConfigError that says how to get one."""
    tag = keys.queue_hash_tag(prefix, queue)
    if tag is None:
        raise ConfigError(
            f"Redis Cluster: the keys of queue {queue!r} with BULL_PREFIX={prefix!r} would "
            "spread over several hash slots, and BullMQ's scripts need them in one. Put a hash "
            "tag in the prefix (BULL_PREFIX={bull}: every queue in one slot) or in each queue "
            f"name ({{{queue}}}: a slot per queue), the same on every service, Node included"
        )
    return tag
