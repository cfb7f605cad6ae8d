"""Fixtures of the operations-command tests (test_ops_*.py): schema, store, process env."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql

from bullworker.history.store import JobStore, open_store
from tests.helpers import bullworker_env


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    name = f"bwtest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def store(pg_dsn: str, pg_schema: str) -> AsyncIterator[JobStore]:
    job_store = open_store(pg_dsn, pg_schema=pg_schema)
    await job_store.open()
    yield job_store
    await job_store.close()


@pytest.fixture
def env(prefix: str, pg_dsn: str, pg_schema: str) -> dict[str, str]:
    """The environment of every ``bullworker`` process of a test."""
    return bullworker_env(
        BULL_PREFIX=prefix, DATABASE_URL=pg_dsn, DATABASE_SCHEMA=pg_schema, APP_ENV="production"
    )
