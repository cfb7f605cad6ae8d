"""Job store against real backends: SQLite in tmp_path, PostgreSQL in a fresh schema per test."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bullworker.history.store import (
    JobRecord,
    JobStore,
    PostgresJobStore,
    SqliteJobStore,
    StoreError,
    StoreUnavailable,
    open_store,
    redact_url,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
StoreFactory = Callable[[], JobStore]


def rec(queue_id: str = "1", **overrides: Any) -> JobRecord:
    """A completed job finishing `offset` seconds after T0 (default 0)."""
    offset = timedelta(seconds=overrides.pop("offset", 0))
    fields: dict[str, Any] = {
        "queue": "mail",
        "queue_id": queue_id,
        "attempt": 1,
        "name": "SendMail",
        "data": {"to": "a@example.com"},
        "status": "completed",
        "result": {"ok": True},
        "created_at": T0 + offset - timedelta(seconds=3),
        "should_execute_at": T0 + offset - timedelta(seconds=2),
        "executed_at": T0 + offset - timedelta(seconds=1),
        "completed_at": T0 + offset,
    }
    fields.update(overrides)
    return JobRecord(**fields)


def stored(record: JobRecord) -> JobRecord:
    """`record` as read back, minus recorded_at (set by the database)."""
    return dataclasses.replace(record, recorded_at=None)


async def _pg_exec(dsn: str, statement: sql.Composed) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(statement)


@pytest.fixture(params=["sqlite", "postgres"])
async def new_store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_dsn: str
) -> AsyncIterator[StoreFactory]:
    """Factory of (unopened) stores sharing one database; all closed afterwards."""
    stores: list[JobStore] = []
    schema = f"bwtest_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        await _pg_exec(pg_dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))

    def factory() -> JobStore:
        store: JobStore
        if request.param == "postgres":
            store = PostgresJobStore(pg_dsn, schema=schema, pool_max=2)
        else:
            store = SqliteJobStore(str(tmp_path / "jobs.sqlite3"))
        stores.append(store)
        return store

    try:
        yield factory
    finally:
        for store in stores:
            await store.close()
        if request.param == "postgres":
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            await _pg_exec(pg_dsn, drop)


@pytest.fixture
async def store(new_store: StoreFactory) -> JobStore:
    opened = new_store()
    await opened.open()
    return opened


async def test_open_is_idempotent(new_store: StoreFactory) -> None:
    first = new_store()
    with pytest.raises(StoreError, match="not open"):
        await first.ping()
    await first.open()
    await first.open()
    await first.ensure_schema()
    second = new_store()
    await second.open()
    assert await second.insert_records([rec()]) == 1
    assert await first.count() == 1
    await first.close()
    await first.close()
    with pytest.raises(StoreError, match="not open"):
        await first.insert_records([rec()])
    await first.open()  # reopen after close
    await first.ping()


async def test_concurrent_ensure_schema(new_store: StoreFactory) -> None:
    stores = [new_store() for _ in range(8)]
    await asyncio.gather(*(s.open() for s in stores))  # 8 creators on a fresh database
    assert await stores[0].insert_records([rec()]) == 1
    first = stores[0]  # drop the table so the 8 ensure_schema() calls race on DDL again
    if isinstance(first, SqliteJobStore):
        await first._run(lambda conn: conn.execute('DROP TABLE "_jobs"'))
    else:
        assert isinstance(first, PostgresJobStore)
        async with first._connection() as conn:
            await conn.execute(sql.SQL("DROP TABLE {}").format(first._table))
    await asyncio.gather(*(s.ensure_schema() for s in stores))
    await asyncio.gather(*(s.ensure_schema() for s in stores))
    assert await stores[3].count() == 0
    assert await stores[5].insert_records([rec()]) == 1


async def test_round_trip_all_fields(store: JobStore) -> None:
    records = [
        rec(
            "ünï-1",
            queue="mäil",
            name="Send📧",
            data={"nested": {"list": [1, 2.5, None, True, "ß"], "empty": {}}, "n": 10**15},
            trace_id="0af7651916cd43dd8448eb211c80319c",
        ),
        rec(
            "2",
            status="failed",
            data=None,
            result={"reason": "boom", "stack": ["Error: boom", "  at x (y.ts:1:2)"]},
            executed_at=None,
            offset=1,
        ),
        rec("3", data=[1, "two"], result="plain string", attempt=7, offset=2),
    ]
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await store.insert_records(records) == 3
    for original in records:
        (read,) = await store.get(original.id)
        assert stored(read) == original
        assert read.recorded_at is not None and read.recorded_at.tzinfo is not None
        assert before <= read.recorded_at <= datetime.now(UTC) + timedelta(seconds=5)
    failed = (await store.get("mail:2"))[0]
    assert failed.duration is None
    assert records[0].duration == timedelta(seconds=1)


async def test_timestamps_are_utc_milliseconds(store: JobStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    local = (T0 + timedelta(microseconds=456789)).astimezone(plus2)
    await store.insert_records([rec(completed_at=local)])
    (read,) = await store.get("mail:1")
    assert read.completed_at == T0.replace(microsecond=579000)
    assert read.completed_at.tzinfo == UTC


async def test_duplicate_insert_is_noop(store: JobStore) -> None:
    assert await store.insert_records([rec(), rec("2")]) == 2
    assert await store.insert_records([rec()]) == 0
    assert await store.insert_records([rec("3"), rec("3"), rec()]) == 1
    assert await store.count() == 3
    assert await store.insert_records([]) == 0


async def test_reused_id_gets_own_row(store: JobStore) -> None:
    old = rec(created_at=T0 - timedelta(days=1), completed_at=T0 - timedelta(days=1))
    new = rec(result={"run": 2}, offset=60)
    assert await store.insert_records([old, new]) == 2
    assert [stored(r) for r in await store.get("mail:1")] == [new, old]
    assert await store.get("mail:404") == []


async def test_recent_filters_and_order(store: JobStore) -> None:
    records = [
        rec("1", offset=0),
        rec("2", offset=10, name="Other"),
        rec("3", offset=20, status="failed"),
        rec("4", offset=30, queue="reports"),
        rec("5", offset=40),
    ]
    await store.insert_records(records)

    def ids(found: list[JobRecord]) -> list[str]:
        return [r.queue_id for r in found]

    assert ids(await store.recent()) == ["5", "4", "3", "2", "1"]
    assert ids(await store.recent(limit=2)) == ["5", "4"]
    assert ids(await store.recent(queue="mail")) == ["5", "3", "2", "1"]
    assert ids(await store.recent(name="Other")) == ["2"]
    assert ids(await store.recent(status="failed")) == ["3"]
    assert ids(await store.recent(status="completed", queue="mail", name="SendMail")) == ["5", "1"]
    since, until = T0 + timedelta(seconds=10), T0 + timedelta(seconds=30)
    assert ids(await store.recent(since=since)) == ["5", "4", "3", "2"]
    assert ids(await store.recent(until=until)) == ["3", "2", "1"]
    assert ids(await store.recent(since=since, until=until)) == ["3", "2"]
    with pytest.raises(ValueError):
        await store.recent(status="running")


async def test_count(store: JobStore) -> None:
    assert await store.count() == 0
    await store.insert_records(
        [rec(str(i), offset=i, status="failed" if i % 3 == 0 else "completed") for i in range(10)]
    )
    assert await store.count() == 10
    assert await store.count(status="failed") == 4
    assert await store.count(queue="mail", name="SendMail", status="completed") == 6
    assert await store.count(queue="nope") == 0
    assert await store.count(since=T0 + timedelta(seconds=5)) == 5
    assert await store.count(until=T0 + timedelta(seconds=5), status="failed") == 2


async def test_last_run_of_a_job_is_its_newest_row(store: JobStore) -> None:
    # What `bullworker schedules` shows as LAST RUN: the newest row, with its status.
    assert await store.recent(queue="mail", name="SendMail", limit=1) == []
    await store.insert_records(
        [rec("1", offset=5), rec("2", offset=9, status="failed"), rec("3", offset=99, name="X")]
    )
    [last] = await store.recent(queue="mail", name="SendMail", limit=1)
    assert (last.queue_id, last.completed_at, last.status) == (
        "2",
        T0 + timedelta(seconds=9),
        "failed",
    )
    assert last.reason is not None
    assert await store.recent(queue="other", name="SendMail", limit=1) == []


async def test_prune_in_batches(store: JobStore) -> None:
    cutoff = T0 + timedelta(seconds=100)
    old = [rec(f"o{i}", offset=i, status="failed" if i < 7 else "completed") for i in range(23)]
    young = [rec(f"y{i}", offset=100 + i) for i in range(5)]
    await store.insert_records(old + young)
    assert await store.prune(older_than=cutoff, status="failed", batch_size=3) == 7
    assert await store.count(status="failed") == 0
    assert await store.prune(older_than=cutoff, batch_size=4) == 16
    assert await store.prune(older_than=cutoff, batch_size=4) == 0
    remaining = await store.recent()
    assert sorted(r.queue_id for r in remaining) == [f"y{i}" for i in range(5)]
    with pytest.raises(ValueError):
        await store.prune(older_than=cutoff, batch_size=0)


async def test_unstorable_values_do_not_poison_batch(store: JobStore) -> None:
    odd = rec("nul", name="N" * 300, data={"k\x00": "v\x00"}, result="\x00")
    assert await store.insert_records([odd, rec("fine")]) == 2
    assert await store.count() == 2


async def test_sqlite_memory() -> None:
    async with open_store("sqlite:///:memory:") as s:
        assert await s.insert_records([rec()]) == 1
        assert [stored(r) for r in await s.recent()] == [rec()]


@pytest.mark.parametrize("silent", [False, True], ids=["refused", "silent"])
async def test_unreachable_postgres_fails_fast(silent: bool) -> None:
    # Port 1 refuses at once; a listener that never answers must hit connect_timeout.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1] if silent else 1
        s = open_store(f"postgresql://postgres:secret@127.0.0.1:{port}/test", connect_timeout=1.0)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            await s.open()
    assert time.monotonic() - started < 3.0
    assert "secret" not in str(info.value)
    assert "secret" not in repr(s)
    with pytest.raises(StoreError):
        await s.ping()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, SqliteJobStore),
        ("", SqliteJobStore),
        ("sqlite:///:memory:", SqliteJobStore),
        ("sqlite:///relative.sqlite3", SqliteJobStore),
        ("sqlite:////tmp/absolute.sqlite3", SqliteJobStore),
        ("postgres://u:p@h/db", PostgresJobStore),
        ("postgresql://u@h:5433/db", PostgresJobStore),
        ("POSTGRESQL+psycopg://u:p@h/db", PostgresJobStore),
    ],
)
def test_open_store_dispatch(url: str | None, kind: type[JobStore]) -> None:
    assert type(open_store(url)) is kind
    assert repr(open_store("sqlite:////a/b.db")) == "SqliteJobStore('/a/b.db')"
    assert repr(open_store("sqlite:///a/b.db")) == "SqliteJobStore('a/b.db')"
    assert repr(open_store(None, sqlite_path="x.db")) == "SqliteJobStore('x.db')"


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@h/db", "redis://:secret@h:6379/0", "secret", "sqlite:relative.db"]
)
def test_open_store_rejects_unknown_urls(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL") as info:
        open_store(url)
    assert "secret" not in str(info.value) or url == "secret"
    with pytest.raises(ValueError, match="schema"):
        open_store("postgresql://h/db", pg_schema='x"; DROP TABLE _jobs; --')


async def test_missing_pg_schema_is_created(pg_dsn: str) -> None:
    schema = f"bwtest_{uuid.uuid4().hex[:12]}"
    try:
        async with open_store(pg_dsn, pg_schema=schema) as s:
            assert await s.insert_records([rec()]) == 1
    finally:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        await _pg_exec(pg_dsn, drop)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgres://:secret@host/db", "postgres://:***@host/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db?password=secret&x=1", "postgresql://host/db?password=***&x=1"),
        ("postgresql://u:p@ss/w:rd@host/db", "postgresql://u:***@host/db"),
        ("host=h password=secret user=u", "host=h password=*** user=u"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
