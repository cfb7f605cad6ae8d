"""Configuration as plain data, read from the environment.

Every annotated attribute of :class:`AppConfig` (and of its subclasses) is a
setting; its environment variable is the attribute name in upper case. Values
passed to the constructor win over the environment::

    class MyConfig(AppConfig):
        mail_from: str = "noreply@example.com"   # read from MAIL_FROM

    config = MyConfig(bull_queue="mail")
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from bullworker.config.redaction import redact_url as redact
from bullworker.config.redis_settings import RedisSettings, check_redis, scoped_redis_settings
from bullworker.config.tls import FILES as TLS_FILES
from bullworker.config.tls import client_tls
from bullworker.core.errors import ConfigError
from bullworker.core.keep import keep_windows
from bullworker.core.limits import RateLimit, parse_rate_limits

__all__ = ["EVENT_LOOPS", "LOG_FORMATS", "LOG_LEVELS", "AppConfig", "RedisSettings", "queue_names"]

#: A PostgreSQL schema name bullworker accepts (as ``store.schema.SCHEMA_NAME_RE``).
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: DATABASE_URL schemes ``store.open_store`` accepts.
_DB_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "sqlite")
#: Levels LOG_LEVEL (and ``bullworker start --log-level``) accepts, in any case.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Formats LOG_FORMAT (and ``--log-format``) accepts: plain lines, or one JSON object a line.
LOG_FORMATS = ("text", "json")
#: What ``EVENT_LOOP`` may say.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse(name: str, raw: str, annotation: Any) -> Any:
    """Convert an environment string to the type of the attribute."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
    if optional and raw.strip() == "":
        return None
    try:
        if annotation is bool:
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true/false")
        if annotation is int:
            return int(raw)
        if annotation is float:
            return float(raw)
    except ValueError as exc:
        shown = "***" if _is_secret(name) else repr(raw)
        raise ConfigError(
            f"{name.upper()}={shown} is not a valid {annotation.__name__}: {exc}"
        ) from None
    return raw


def queue_names(raw: str | None, setting: str) -> list[str]:
    """The queues of a comma-separated list, in order, without blanks or repeats.

    A name with ``:`` is refused, as Node BullMQ refuses it.
    """
    names = list(dict.fromkeys(q.strip() for q in (raw or "").split(",") if q.strip()))
    bad = [q for q in names if ":" in q]
    if bad:
        raise ConfigError(f"{setting}: a queue name cannot contain ':' ({', '.join(bad)})")
    return names


def _is_secret(name: str) -> bool:
    return "password" in name or "token" in name or name.endswith("_url")


class AppConfig:
    """Settings of a bullworker app; subclass it to add your own."""

    app_env: str = "development"
    enable_job_runner: bool | None = None

    redis_url: str | None = None
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_username: str | None = None
    redis_password: str | None = None
    redis_db: int = 0
    redis_tls: bool = False
    #: PEM files for TLS: the CA to trust, and a client certificate with its key.
    redis_tls_ca_file: str | None = None
    redis_tls_cert_file: str | None = None
    redis_tls_key_file: str | None = None
    redis_sentinel_host: str | None = None
    redis_sentinel_port: int = 26379
    redis_sentinel_name: str = "mymaster"
    #: Credentials of the sentinels themselves (REDIS_PASSWORD is the data nodes').
    redis_sentinel_username: str | None = None
    redis_sentinel_password: str | None = None
    #: REDIS_URL (or REDIS_HOST/REDIS_PORT) is a seed node of a Redis Cluster.
    redis_cluster: bool = False

    # BULL_REDIS_* override REDIS_* for the queues, one key at a time.
    bull_redis_url: str | None = None
    bull_redis_host: str | None = None
    bull_redis_port: int | None = None
    bull_redis_username: str | None = None
    bull_redis_password: str | None = None
    bull_redis_db: int | None = None
    bull_redis_tls: bool | None = None
    bull_redis_tls_ca_file: str | None = None
    bull_redis_tls_cert_file: str | None = None
    bull_redis_tls_key_file: str | None = None
    bull_redis_sentinel_host: str | None = None
    bull_redis_sentinel_port: int | None = None
    bull_redis_sentinel_name: str | None = None
    bull_redis_sentinel_username: str | None = None
    bull_redis_sentinel_password: str | None = None
    bull_redis_cluster: bool | None = None

    bull_prefix: str = "bull"
    bull_queue: str = "default"
    #: Seconds a producer call or a connection attempt may take before it fails.
    redis_timeout: float = 10.0
    #: Largest payload ``queue_job`` accepts, in bytes of JSON (0: no limit).
    max_payload_bytes: int = 1_048_576

    database_url: str | None = None
    #: PostgreSQL schema of the ``_jobs`` table (default: the search path).
    database_schema: str | None = None
    sqlite_path: str = "bullworker.sqlite3"
    #: Record finished jobs in ``_jobs`` (and then remove them from Redis).
    record_jobs: bool = True
    #: Comma-separated queues to record without consuming them (queues that only
    #: other services, e.g. Node, process): a recorder election per queue, no Worker.
    record_queues: str | None = None
    recorder_batch_size: int = 500
    #: Seconds between sweeps of the finished sets when no event arrives.
    recorder_sweep_interval: float = 5.0
    #: A job's last log lines (``job.log``) its ``_jobs`` row keeps; 0 keeps none.
    jobs_log_lines: int = 100
    #: Recorded jobs kept in Redis for Node tools: the newest completed and failed of each queue
    #: for at most KEEP_AGE ("none": any age; a 0 removes at once). QUEUE_KEEP="q=C/F/AGE,...".
    keep_completed: int = 1000
    keep_failed: int = 5000
    keep_age: str | None = "1h"
    queue_keep: str | None = None
    #: Seconds a recorder leader's lock lives without renewal (takeover time).
    leader_ttl: float = 10.0
    #: Age after which recorder leaders delete ``_jobs`` rows, e.g. ``"30d"``; unset keeps all.
    jobs_retention: str | None = None
    #: Seconds between two retention runs of a recorder leader.
    jobs_retention_interval: float = 3600.0

    worker_concurrency: int = 10
    #: Comma-separated queues this runner consumes; empty means every queue of
    #: the registered jobs.
    worker_queues: str | None = None
    worker_lock_duration: int = 30_000
    worker_stalled_interval: int = 30_000
    worker_max_stalled_count: int = 1
    #: Comma-separated ``queue=max/window`` rate limits (``emails=10/1s,reports=5/2m``):
    #: at most ``max`` jobs of the queue start per window, across all its workers.
    #: A queue's entry here wins over its job classes' ``RATE_LIMIT``.
    queue_rate_limits: str | None = None
    #: Seconds running jobs get to finish on shutdown before a forced close.
    shutdown_grace: float = 25.0
    #: Seconds the event loop may stay blocked (an async handler calling blocking
    #: code) before the runner's watchdog logs a warning naming the job; 0: off.
    loop_block_warning: float = 5.0
    cron_tz: str = "UTC"
    #: Level and format (``text`` or ``json``) of the log bullworker sets up when the
    #: program has none (``bullworker start``, or an app hosted in an ASGI lifespan).
    log_level: str = "INFO"
    log_format: str = "text"
    #: The event loop of ``bullworker start``: ``auto`` (uvloop when it is installed, as with
    #: ``bullworker[fast]``), ``uvloop`` (required) or ``asyncio`` (the standard one).
    event_loop: str = "auto"
    #: The dashboard's credentials (docs/dashboard.md): a token, and/or HTTP basic ones.
    dashboard_token: str | None = None
    dashboard_user: str | None = None
    dashboard_password: str | None = None

    _settings: ClassVar[dict[str, Any]] = {}

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        env = os.environ if environ is None else environ
        fields = self.settings()
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        for name, annotation in fields.items():
            if name in overrides:
                value = overrides[name]
            elif name.upper() in env:
                value = _parse(name, env[name.upper()], annotation)
            else:
                value = getattr(type(self), name)
            setattr(self, name, value)
        self.validate()

    @classmethod
    def settings(cls) -> dict[str, Any]:
        """Names and types of every setting, including those of subclasses."""
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object:
                continue
            hints = typing.get_type_hints(klass)
            for name in vars(klass).get("__annotations__", {}):
                if not name.startswith("_") and typing.get_origin(hints[name]) is not ClassVar:
                    found[name] = hints[name]
        return found

    def validate(self) -> None:
        """Reject values that cannot work; subclasses may extend it."""
        if self.worker_concurrency < 1:
            raise ConfigError("WORKER_CONCURRENCY must be at least 1")
        if self.shutdown_grace < 0:
            raise ConfigError("SHUTDOWN_GRACE must not be negative")
        if self.loop_block_warning < 0:
            raise ConfigError("LOOP_BLOCK_WARNING must not be negative")
        if self.database_url and self.database_url.partition("://")[0].lower() not in _DB_SCHEMES:
            raise ConfigError(
                f"DATABASE_URL={redact(self.database_url)!r} is neither a postgresql:// "
                "nor a sqlite:/// URL"
            )
        if self.database_schema is not None and not _SCHEMA_NAME.fullmatch(self.database_schema):
            raise ConfigError(
                f"DATABASE_SCHEMA={self.database_schema!r} is not a plain identifier "
                "(letters, digits and _, not starting with a digit, at most 63 characters)"
            )
        if self.recorder_batch_size < 1 or self.recorder_sweep_interval <= 0:
            raise ConfigError("RECORDER_BATCH_SIZE and RECORDER_SWEEP_INTERVAL must be positive")
        lines = self.jobs_log_lines
        if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
            raise ConfigError(f"JOBS_LOG_LINES={lines!r} must be a whole number, 0 or more")
        if self.leader_ttl < 1:
            raise ConfigError("LEADER_TTL must be at least 1 second")
        if self.redis_timeout <= 0:
            raise ConfigError("REDIS_TIMEOUT must be positive")
        if not self.bull_queue or ":" in self.bull_queue:
            raise ConfigError("BULL_QUEUE must be a non-empty name without ':'")
        if not self.bull_prefix:
            raise ConfigError("BULL_PREFIX must not be empty")
        if self.jobs_retention is not None:
            from bullworker.core.durations import DurationError, parse_duration

            try:
                parse_duration(self.jobs_retention)
            except DurationError as exc:
                raise ConfigError(f"JOBS_RETENTION: {exc}") from None
        if self.jobs_retention_interval <= 0:
            raise ConfigError("JOBS_RETENTION_INTERVAL must be positive")
        queue_names(self.record_queues, "RECORD_QUEUES")
        keep_windows(self.keep_completed, self.keep_failed, self.keep_age, self.queue_keep)
        parse_rate_limits(self.queue_rate_limits, "QUEUE_RATE_LIMITS")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL={self.log_level!r} is not a log level: use {', '.join(LOG_LEVELS)}"
            )
        if self.log_format.lower() not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT={self.log_format!r} is neither text nor json")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"EVENT_LOOP={self.event_loop!r} must be one of {', '.join(EVENT_LOOPS)}"
            )
        if self.dashboard_token is not None and len(self.dashboard_token.strip()) < 16:
            raise ConfigError("DASHBOARD_TOKEN must be at least 16 characters")
        if bool(self.dashboard_user) != bool(self.dashboard_password):
            raise ConfigError("DASHBOARD_USER and DASHBOARD_PASSWORD: set both or neither")
        self._check_redis_tls("bull")
        queues = [self.bull_queue, *queue_names(self.record_queues, "RECORD_QUEUES")]
        check_redis(self, "bull", self.bull_prefix, [*queues, *(self.consumed_queues or [])])

    def _check_redis_tls(self, scope: str) -> None:
        """The TLS files of a scope: paired, loadable, and for a TLS connection."""

        def name(key: str) -> str:
            scoped = getattr(self, f"{scope}_redis_{key}", None) is not None
            return f"{scope.upper()}_REDIS_{key.upper()}" if scoped else f"REDIS_{key.upper()}"

        client_tls(self.redis_settings(scope), {key: name(key) for key in TLS_FILES})

    @property
    def is_development(self) -> bool:
        return self.app_env in ("", "development", "dev")

    @property
    def is_test(self) -> bool:
        return self.app_env == "test"

    @property
    def runner_enabled(self) -> bool:
        """Whether the app starts the runner by itself (DESIGN §5)."""
        if self.enable_job_runner is not None:
            return self.enable_job_runner
        return self.is_development

    @property
    def consumed_queues(self) -> list[str] | None:
        if not self.worker_queues:
            return None
        return [q.strip() for q in self.worker_queues.split(",") if q.strip()]

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """``QUEUE_RATE_LIMITS`` by queue."""
        return parse_rate_limits(self.queue_rate_limits, "QUEUE_RATE_LIMITS")

    @property
    def record_only_queues(self) -> list[str]:
        """``RECORD_QUEUES`` as a list: queues a runner records without consuming them."""
        return queue_names(self.record_queues, "RECORD_QUEUES")

    def redis_settings(self, scope: str | None = "bull") -> RedisSettings:
        """Redis settings for a scope: ``BULL_REDIS_*`` keys win over ``REDIS_*``."""
        return scoped_redis_settings(self, scope)

    def __repr__(self) -> str:
        parts = []
        for name in self.settings():
            value = getattr(self, name)
            if value is not None and _is_secret(name):
                value = redact(str(value)) if name.endswith("_url") else "***"
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
