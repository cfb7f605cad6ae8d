"""``bullworker doctor``: is this deployment set up the way bullworker needs it?

Each check is one `Check` line, OK, WARN or FAIL, with what to do about it.
Nothing is changed: the ``_jobs`` table is looked for, not created.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bullworker.app import App
from bullworker.config.redaction import redact_url, scrub, url_secrets
from bullworker.config.settings import AppConfig, RedisSettings
from bullworker.core.cron import next_fire_times
from bullworker.history.store import PostgresJobStore, SqliteJobStore, store_for
from bullworker.history.store import schema as q
from bullworker.history.store import sql_partitions as p
from bullworker.history.store.postgres import connect_failure
from bullworker.ops.doctor_checks import Check, recorder_checks
from bullworker.ops.inspect import app_queues, iso
from bullworker.transport.bullmq_compat import SUPPORTED, check_bullmq, installed_version
from bullworker.transport.bullmq_compat.node_versions import read_node_bullmq, verdict
from bullworker.transport.connection import connection_kwargs, redis_client
from bullworker.transport.probe import unreachable
from bullworker.transport.tls import TLSConnection

#: BullMQ refuses older servers; it recommends at least 6.2.
MIN_REDIS = (5, 0, 0)
RECOMMENDED_REDIS = (6, 2, 0)
#: From this version BullMQ blocks for 1 ms instead of whole seconds.
PRECISE_BLOCKING_REDIS = (7, 0, 8)


def failed(checks: list[Check]) -> bool:
    """Whether any check FAILed (``bullworker doctor`` then exits with 1)."""
    return any(check.level == "FAIL" for check in checks)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


async def run_doctor(app: App) -> list[Check]:
    """Every check, in a fixed order; Redis checks stop at an unreachable server."""
    config = app.config
    settings = config.redis_settings("bull")
    checks = [bullmq_check(), connection_check(settings)]
    client = _client(settings)
    try:
        reachable = await _ping(client, config, checks)
        if reachable:
            checks += await _guarded("redis server", _server_checks(client, config))
        checks.append(await database_check(config))
        checks += job_checks(app)
        if reachable:
            checks += await _guarded("recorder", recorder_checks(client, app))
            checks += await _guarded("node bullmq", node_checks(client, app))
    finally:
        await client.aclose()
    return checks


def bullmq_check() -> Check:
    """The installed bullmq against the supported range and the internals bullworker relies on."""
    problems = check_bullmq()
    if problems:
        return Check("bullmq", "FAIL", "; ".join(problems), f"pip install 'bullmq{SUPPORTED}'")
    return Check("bullmq", "OK", f"bullmq {installed_version()} (supported: {SUPPORTED})")


async def _guarded(name: str, work: Awaitable[list[Check]]) -> list[Check]:
    """The checks of ``work``, or one FAIL if Redis stops answering meanwhile."""
    try:
        return await work
    except Exception as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return [
            Check(name, "FAIL", f"Redis stopped answering ({reason})", "check the Redis server")
        ]


def _client(settings: RedisSettings) -> aioredis.Redis:
    """bullworker's client, but without retries: an unreachable server shows its reason."""
    kwargs = connection_kwargs(settings)
    if "connection_pool" in kwargs or settings.cluster:
        return redis_client(settings)
    client = aioredis.Redis(decode_responses=True, retry=Retry(NoBackoff(), 0), **kwargs)
    if kwargs.get("ssl"):
        client.connection_pool.connection_class = TLSConnection
    return client


def _shown(kwargs: dict[str, Any]) -> str:
    """``key=value, ...`` of connection keywords, passwords as ``***``."""
    return ", ".join(
        f"{key}={'***' if 'password' in key else repr(value)}"
        for key, value in kwargs.items()
        if value is not None or key == "socket_timeout"
    )


def connection_check(settings: RedisSettings) -> Check:
    """The redis-py keyword arguments bullmq gets, passwords hidden."""
    kwargs = connection_kwargs(settings)
    if "connection_pool" in kwargs:
        pool = kwargs["connection_pool"]
        shown = f"{settings.describe()} through a SentinelConnectionPool"
        sentinel_auth = {
            key: pool.sentinel_manager.sentinel_kwargs.get(key) for key in ("username", "password")
        }
        if any(value is not None for value in sentinel_auth.values()):
            shown += f"; sentinels: {_shown(sentinel_auth)}"
        master = {
            key: value
            for key, value in pool.connection_kwargs.items()
            if key in ("username", "password", "db") or key.startswith("ssl_")
        }
        tls = ", TLS" if settings.uses_tls else ""
        shown += f"; master{tls}: {_shown(master)}"
        timeout = pool.connection_kwargs.get("socket_timeout")
    else:
        timeout = kwargs.get("socket_timeout")
        shown = _shown(kwargs)
    if timeout is not None:
        return Check(
            "connection",
            "WARN",
            f"socket_timeout={timeout!r}: blocking reads may time out ({shown})",
            "build connections with bullworker.transport.connection.bullmq_connection()",
        )
    return Check("connection", "OK", f"bullmq connection: {shown}")


async def _ping(client: aioredis.Redis, config: AppConfig, checks: list[Check]) -> bool:
    settings, timeout = config.redis_settings("bull"), config.redis_timeout
    started = time.perf_counter()
    problem = None
    try:
        refused = await unreachable(settings)  # at once, not after the client's timeout
        if refused is not None:
            problem = f": {refused}"
        else:
            async with asyncio.timeout(timeout):
                await client.ping()
    except Exception as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        problem = f" within {timeout:g} s ({reason})"
    if problem is not None:
        checks.append(
            Check(
                "redis",
                "FAIL",
                f"cannot reach Redis at {settings.describe()}{problem}",
                "start Redis or point REDIS_URL (or REDIS_HOST/REDIS_PORT, BULL_REDIS_* for "
                "the queues) at it; REDIS_TIMEOUT bounds the wait",
            )
        )
        return False
    elapsed = (time.perf_counter() - started) * 1000
    checks.append(Check("redis", "OK", f"{settings.describe()} answered PING in {elapsed:.1f} ms"))
    return True


async def _server_checks(client: aioredis.Redis, config: AppConfig) -> list[Check]:
    checks: list[Check] = []
    timeout = config.redis_timeout
    async with asyncio.timeout(timeout):
        info = await client.info("server")
    raw = str(info.get("redis_version", "0"))
    version = _version(raw)
    upgrade = "upgrade Redis to 7.0.8 or later"
    if version < MIN_REDIS:
        checks.append(
            Check("redis version", "FAIL", f"Redis {raw}: BullMQ needs 5.0 or later", upgrade)
        )
    elif version < RECOMMENDED_REDIS:
        checks.append(
            Check("redis version", "WARN", f"Redis {raw}: BullMQ recommends 6.2 or later", upgrade)
        )
    elif version < PRECISE_BLOCKING_REDIS:
        message = f"Redis {raw}: before 7.0.8 BullMQ blocks in whole seconds, so delayed and cron jobs may start up to 1 s late"
        checks.append(Check("redis version", "WARN", message, upgrade))
    else:
        checks.append(Check("redis version", "OK", f"Redis {raw}"))
    fix = (
        "run CONFIG SET maxmemory-policy noeviction, and put 'maxmemory-policy noeviction' "
        "in redis.conf (or your provider's settings) so it survives a restart"
    )
    try:
        async with asyncio.timeout(timeout):
            policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
    except Exception as exc:  # managed services often refuse CONFIG
        message = (
            f"cannot read maxmemory-policy ({type(exc).__name__}: {exc}); it must be noeviction"
        )
        checks.append(Check("maxmemory-policy", "WARN", message, fix))
        return checks
    if policy != "noeviction":
        message = (
            f"maxmemory-policy is {policy}: under memory pressure Redis evicts keys and loses jobs"
        )
        checks.append(Check("maxmemory-policy", "WARN", message, fix))
    else:
        checks.append(Check("maxmemory-policy", "OK", "noeviction"))
    return checks


async def database_check(config: AppConfig) -> Check:
    """Reachable, and ``_jobs`` exists or will be created; the URL shown without password."""
    try:
        store = store_for(config)
    except ValueError as exc:
        return Check("database", "FAIL", str(exc), "fix DATABASE_URL")
    if isinstance(store, PostgresJobStore):
        return await _postgres_check(store.conninfo, config)
    assert isinstance(store, SqliteJobStore)
    return await asyncio.to_thread(_sqlite_check, store.path)


async def _postgres_check(conninfo: str, config: AppConfig) -> Check:
    where = redact_url(conninfo) + (
        f" (schema {config.database_schema})" if config.database_schema else ""
    )
    fix = "check DATABASE_URL, and that PostgreSQL runs and accepts connections from here"
    try:
        async with asyncio.timeout(config.redis_timeout):
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=max(2, int(config.redis_timeout))
            )
            async with conn:
                cur = await conn.execute(q.PG_OBJECTS_PRESENT, (config.database_schema, [q.TABLE]))
                table = await cur.fetchone()
                cur = await conn.execute(
                    q.PG_COLUMNS_PRESENT,
                    (config.database_schema, q.TABLE, q.PG_ADDED_COLUMN_NAMES),
                )
                columns = await cur.fetchone()
                cur = await conn.execute(p.PG_RELKIND, (config.database_schema, q.TABLE))
                kind = await cur.fetchone()
    except (psycopg.Error, TimeoutError, OSError) as exc:
        detail = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        detail = (
            connect_failure(exc) or scrub(detail, url_secrets(conninfo)).strip().splitlines()[0]
        )
        return Check("database", "FAIL", f"PostgreSQL {where} unreachable: {detail}", fix)
    if not (table and table[0]):
        return Check(
            "database", "OK", f"PostgreSQL {where}: _jobs will be created by the first runner"
        )
    if not (columns and columns[0] == len(q.PG_ADDED_COLUMN_NAMES)):
        return Check(
            "database",
            "OK",
            f"PostgreSQL {where}: _jobs exists; new columns will be added by the next runner",
        )
    if kind and kind[0] == "r":  # made before partitioning: it works, but grows slower
        return Check(
            "database",
            "WARN",
            f"PostgreSQL {where}: _jobs is not partitioned by day (an earlier version made it): "
            "retention deletes its rows one by one and its indexes keep growing",
            "run `bullworker jobs partition` at a quiet time (one transaction; docs/operations.md)",
        )
    return Check("database", "OK", f"PostgreSQL {where}: _jobs exists")


def _sqlite_check(path: str) -> Check:
    if path == ":memory:":
        return Check(
            "database",
            "WARN",
            "SQLite in memory: the job history is lost with the process",
            "set SQLITE_PATH or DATABASE_URL",
        )
    file = Path(path)
    if not file.exists():
        folder = file.parent if str(file.parent) else Path(".")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            return Check(
                "database",
                "FAIL",
                f"SQLite {path}: folder {folder} is missing or not writable",
                "set SQLITE_PATH to a writable place",
            )
        return Check("database", "OK", f"SQLite {path}: _jobs will be created by the first runner")
    if not os.access(file, os.W_OK):
        return Check(
            "database",
            "FAIL",
            f"SQLite {path} is not writable",
            "fix the file's permissions or SQLITE_PATH",
        )
    try:
        conn = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True, timeout=5)
        try:
            exists = conn.execute(q.SQLITE_TABLE_EXISTS).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check("database", "FAIL", f"SQLite {path}: {exc}", "check SQLITE_PATH")
    state = "_jobs exists" if exists else "_jobs will be created by the first runner"
    return Check("database", "OK", f"SQLite {path}: {state}")


def job_checks(app: App) -> list[Check]:
    """Each registered job: queue, cron schedule, and whether its dependencies resolve."""
    definitions = sorted(app.registry, key=lambda d: d.name)
    if not definitions:
        return [
            Check(
                "jobs",
                "WARN",
                "no jobs registered",
                "declare jobs with @worker_job() in modules the app imports, or pass registry=",
            )
        ]
    checks = []
    for definition in definitions:
        cls = definition.cls
        parts = [f"queue {definition.queue(app.config.bull_queue)}"]
        if cls.CRON_SCHEDULE:
            parts.append(cron_summary(cls.CRON_SCHEDULE, cls.CRON_TZ or app.config.cron_tz))
        try:
            app.build_job(cls)
        except Exception as exc:
            message = f"{definition.name}: {', '.join(parts)}; cannot be built: {exc}"
            fix = "make the type resolvable: create_app(providers=[...]) or app.provide(Type, instance)"
            checks.append(Check("job", "FAIL", message, fix))
            continue
        checks.append(
            Check("job", "OK", f"{definition.name}: {', '.join(parts)}; dependencies resolve")
        )
    return checks


def cron_summary(pattern: str, tz: str, *, after: datetime | None = None) -> str:
    """``cron '<pattern>' <tz>, next <time>``: the next run after ``after`` (default now),
    as the scheduler computes it."""
    try:
        found: datetime | None = next_fire_times(pattern, tz, 1, after=after)[0]
    except Exception:  # doctor reports, never crashes: an unusable pattern or zone shows None
        found = None
    return f"cron {pattern!r} {tz}, next {iso(found)}"


async def node_checks(client: aioredis.Redis, app: App) -> list[Check]:
    """Each queue: the Node BullMQ sharing it, against those that share queues safely."""
    checks = []
    for queue in app_queues(app):
        async with asyncio.timeout(app.config.redis_timeout):
            node = await read_node_bullmq(client, app.config.bull_prefix, queue)
        checks.append(Check("node bullmq", *verdict(queue, node)))
    return checks
