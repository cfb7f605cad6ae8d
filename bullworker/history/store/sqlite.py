"""Embedded SQLite job store (stdlib sqlite3) for setups without DATABASE_URL.

One connection lives in one dedicated worker thread; every call is shipped to
that thread, so the event loop never blocks on disk I/O. WAL journal mode and a
busy timeout let several processes share the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from bullworker.history.store import schema as q
from bullworker.history.store.base import (
    Filters,
    JobRecord,
    JobStore,
    StoreError,
    StoreUnavailable,
    from_naive_utc,
    to_naive_utc,
)

T = TypeVar("T")

MEMORY = ":memory:"


def _ts(value: datetime) -> str:
    """Aware datetime -> ``'YYYY-MM-DD HH:MM:SS.fff'`` (UTC)."""
    return to_naive_utc(value).isoformat(sep=" ", timespec="milliseconds")


def _ts_opt(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else from_naive_utc(datetime.fromisoformat(value))


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _row(r: JobRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.queue,
        r.queue_id,
        r.attempt,
        r.name,
        _dumps(r.data),
        r.trace_id,
        r.status,
        _dumps(r.result),
        _ts(r.created_at),
        _ts(r.should_execute_at),
        _ts_opt(r.executed_at),
        _ts(r.completed_at),
        r.retry_of,
        _dumps(r.progress),
        _dumps(r.logs),
        r.parent,
    )


def _record(row: Sequence[Any]) -> JobRecord:
    created, should, completed = _parse(row[7]), _parse(row[8]), _parse(row[10])
    assert created is not None and should is not None and completed is not None
    return JobRecord(
        queue=row[0],
        queue_id=row[1],
        attempt=row[2],
        name=row[3],
        data=_loads(row[4]),
        status=row[5],
        result=_loads(row[6]),
        created_at=created,
        should_execute_at=should,
        executed_at=_parse(row[9]),
        completed_at=completed,
        trace_id=row[11],
        recorded_at=_parse(row[12]),
        retry_of=row[13],
        progress=_loads(row[14]),
        logs=_loads(row[15]),
        parent=row[16],
    )


class SqliteJobStore(JobStore):
    """``_jobs`` in a SQLite file (or ``":memory:"``, private to this store)."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SqliteJobStore({self._path!r})"

    def describe(self) -> str:
        if self._path == ":memory:":
            return "SQLite in memory"
        relative = not os.path.isabs(self._path) and not self._path.startswith(".")
        return f"SQLite {os.path.join('.', self._path) if relative else self._path}"

    @property
    def path(self) -> str:
        """The database file, or ``":memory:"``."""
        return self._path

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` in the store's thread, mapping sqlite3 errors."""
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise StoreError(f"SQLite store {self._path!r} is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, conn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite {self._path!r} unavailable: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {self._path!r}: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        deadline = time.monotonic() + self._busy_timeout
        try:
            while True:
                try:
                    for pragma in q.SQLITE_PRAGMAS:
                        conn.execute(pragma)
                    return conn
                except sqlite3.OperationalError as exc:
                    # Switching a fresh file to WAL while another connection does the
                    # same reports SQLITE_BUSY at once, without the busy handler.
                    busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
                    if not busy or time.monotonic() > deadline:
                        raise
                time.sleep(0.01)
        except BaseException:
            conn.close()
            raise

    async def open(self) -> None:
        async with self._open_lock:
            if self._conn is not None:
                return
            executor = ThreadPoolExecutor(1, thread_name_prefix="bullworker-sqlite")
            try:
                conn = await asyncio.get_running_loop().run_in_executor(executor, self._connect)
            except sqlite3.Error as exc:
                executor.shutdown(wait=False)
                raise StoreUnavailable(f"SQLite {self._path!r} unavailable: {exc}") from exc
            self._executor, self._conn = executor, conn
            try:
                await self.ensure_schema()
            except BaseException:
                await self._shutdown()
                raise

    async def close(self) -> None:
        async with self._open_lock:
            await self._shutdown()

    async def _shutdown(self) -> None:
        executor, conn = self._executor, self._conn
        self._executor = self._conn = None
        if executor is not None and conn is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
        """Run `work` in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (write lock taken up front)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def ensure_schema(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            def ddl() -> None:
                conn.execute(q.SQLITE_DDL[0])  # the table, then its columns, then its indexes:
                present = {row[0] for row in conn.execute(q.SQLITE_COLUMNS)}
                for column, _, sqlite_type in q.ADDED_COLUMNS:  # an index may be on one
                    if column not in present:
                        conn.execute(q.SQLITE_ADD_COLUMN.format(column=column, type=sqlite_type))
                for statement in q.SQLITE_DDL[1:]:
                    conn.execute(statement)
                [(table_sql,)] = conn.execute(q.SQLITE_TABLE_SQL).fetchall()
                if q.NEWEST_STATUS not in table_sql:  # a table older than `cancelled`
                    for statement in q.SQLITE_REBUILD:
                        conn.execute(statement)

            self._transaction(conn, ddl)

        await self._run(create)

    async def insert_records(self, records: Sequence[JobRecord]) -> int:
        if not records:
            return 0
        rows = [_row(r) for r in records]

        def insert(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            self._transaction(conn, lambda: conn.executemany(q.SQLITE_INSERT, rows))
            return conn.total_changes - before

        return await self._run(insert)

    async def _select(self, statement: str, params: Sequence[Any]) -> list[JobRecord]:
        rows = await self._run(lambda conn: conn.execute(statement, params).fetchall())
        return [_record(row) for row in rows]

    async def _recent(self, filters: Filters, limit: int) -> list[JobRecord]:
        where, params = filters.where("?", _ts)
        return await self._select(q.SQLITE_RECENT.format(where=where), [*params, limit])

    async def get(self, job_id: str) -> list[JobRecord]:
        return await self._select(q.SQLITE_GET, (job_id,))

    async def retries_of(self, job_id: str) -> list[JobRecord]:
        return await self._select(q.SQLITE_RETRIES, (job_id,))

    async def children_of(self, parent_id: str) -> list[JobRecord]:
        return await self._select(q.SQLITE_CHILDREN, (parent_id,))

    async def _count(self, filters: Filters) -> int:
        where, params = filters.where("?", _ts)
        statement = q.SQLITE_COUNT.format(where=where)
        row = await self._run(lambda conn: conn.execute(statement, params).fetchone())
        return int(row[0])

    async def _prune_batch(self, older_than: datetime, status: str | None, limit: int) -> int:
        statement = q.SQLITE_PRUNE.format(status="" if status is None else q.SQLITE_PRUNE_STATUS)
        params: list[Any] = [_ts(older_than)]
        params += [] if status is None else [status]
        params.append(limit)

        def batch(conn: sqlite3.Connection) -> int:  # one short write transaction
            return self._transaction(conn, lambda: conn.execute(statement, params).rowcount)

        return await self._run(batch)

    async def delete_record(self, record: JobRecord) -> int:
        key = (record.id, _ts(record.created_at), record.attempt, _ts(record.completed_at))
        params = (*key, record.status)

        def delete(conn: sqlite3.Connection) -> int:
            return self._transaction(
                conn, lambda: conn.execute(q.SQLITE_DELETE_RECORD, params).rowcount
            )

        return await self._run(delete)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute(q.SQLITE_PING).fetchone())
