"""Durable audit trail of finished jobs (the ``_jobs`` table).

`open_store` picks the backend from a URL: PostgreSQL in production, an
embedded SQLite file when no DATABASE_URL is configured; `store_for` does so
from an app's settings.
"""

from __future__ import annotations

from urllib.parse import unquote

from bullworker.config.redaction import redact_url
from bullworker.config.settings import AppConfig
from bullworker.core.errors import ConfigError
from bullworker.core.status import Status
from bullworker.history.store.base import JobRecord, JobStore, StoreError, StoreUnavailable
from bullworker.history.store.postgres import PostgresJobStore
from bullworker.history.store.sqlite import SqliteJobStore

__all__ = [
    "JobRecord",
    "JobStore",
    "PostgresJobStore",
    "SqliteJobStore",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "redact_url",
    "store_for",
]

_PG_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


def open_store(
    database_url: str | None,
    *,
    sqlite_path: str = "bullworker.sqlite3",
    pg_schema: str | None = None,
    pool_min: int = 1,
    pool_max: int = 4,
    connect_timeout: float = 5.0,
) -> JobStore:
    """Build (not open) the store for `database_url`.

    - ``postgres://``, ``postgresql://``, ``postgresql+psycopg://`` -> `PostgresJobStore`
    - ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:``
      -> `SqliteJobStore`
    - None or ``""`` -> `SqliteJobStore` on `sqlite_path`

    Anything else raises `ConfigError`, a ValueError (the URL shown without password).
    """
    if not database_url:
        return SqliteJobStore(sqlite_path)
    scheme, sep, rest = database_url.partition("://")
    scheme = scheme.lower()
    if sep and scheme in _PG_SCHEMES:
        return PostgresJobStore(
            f"postgresql://{rest}",
            schema=pg_schema,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
        )
    if sep and scheme == "sqlite" and (rest == "" or rest.startswith("/")):
        path = unquote(rest[1:]) or ":memory:"
        return SqliteJobStore(path)
    raise ConfigError(
        f"unsupported database URL {redact_url(database_url)!r}: expected "
        "postgresql://user:password@host:port/dbname or sqlite:///path/to/file.sqlite3"
    )


def store_for(config: AppConfig, *, connect_timeout: float = 5.0) -> JobStore:
    """Build (not open) the app's store: ``DATABASE_URL`` (and ``DATABASE_SCHEMA``), else
    ``SQLITE_PATH``; ValueError as `open_store`."""
    return open_store(
        config.database_url,
        sqlite_path=config.sqlite_path,
        pg_schema=config.database_schema,
        connect_timeout=connect_timeout,
    )
