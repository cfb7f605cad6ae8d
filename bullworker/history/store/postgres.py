"""PostgreSQL job store: psycopg 3 async with a psycopg_pool connection pool."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NoReturn

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from bullworker.config.redaction import redact_url, scrub, url_location, url_secrets
from bullworker.history.store import partitions
from bullworker.history.store import schema as q
from bullworker.history.store import sql_partitions as p
from bullworker.history.store.base import (
    Filters,
    JobRecord,
    JobStore,
    StoreError,
    StoreUnavailable,
    check_status,
    from_naive_utc,
    to_naive_utc,
)
from bullworker.history.store.pg_write import BatchWriter, text_of

Conn = psycopg.AsyncConnection[TupleRow]
log = logging.getLogger("bullworker.store")


def _record(row: Sequence[Any]) -> JobRecord:
    executed, trace, recorded = row[9], row[11], row[12]
    return JobRecord(
        queue=row[0],
        queue_id=row[1],
        attempt=row[2],
        name=row[3],
        data=row[4],
        status=row[5],
        result=row[6],
        created_at=from_naive_utc(row[7]),
        should_execute_at=from_naive_utc(row[8]),
        executed_at=None if executed is None else from_naive_utc(executed),
        completed_at=from_naive_utc(row[10]),
        trace_id=None if trace is None else trace.rstrip(),
        recorded_at=None if recorded is None else from_naive_utc(recorded),
        retry_of=row[13],
        progress=row[14],
        logs=row[15],
        parent=row[16],
    )


_UNKNOWN_HOST = re.compile(
    r"(?:failed to resolve host|could not translate host name) ['\"]?([^'\"\s]+)"
)


def connect_failure(exc: BaseException) -> str | None:
    """``connection refused``, ``unknown host 'db'``... when libpq could not connect at all,
    else None (the server answered: credentials, database...)."""
    if not isinstance(exc, psycopg.OperationalError):
        return None
    text = str(exc)
    host = _UNKNOWN_HOST.search(text)
    if host:
        return f"unknown host {host.group(1)!r}"
    for known in ("Connection refused", "No route to host", "Network is unreachable"):
        if known in text:
            return known.lower()
    return None


class PostgresJobStore(JobStore):
    """``_jobs`` in PostgreSQL, optionally in schema `schema` (created if missing)."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        pool_min: int = 1,
        pool_max: int = 4,
        connect_timeout: float = 5.0,
    ) -> None:
        self._table = q.pg_table(schema)  # validates the schema name
        self._schema = schema
        self._conninfo = conninfo
        self._display = redact_url(conninfo)
        self._secrets = url_secrets(conninfo)
        self._pool_min = pool_min
        self._pool_max = max(pool_min, pool_max)
        self._timeout = connect_timeout
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._open_lock = asyncio.Lock()
        self._writer = BatchWriter(self._table)
        self._maintain_at = 0.0  # when `maintain` looks at the partitions ahead next
        self._get = q.pg_statement(q.PG_GET, self._table)
        self._retries = q.pg_statement(q.PG_RETRIES, self._table)
        self._children = q.pg_statement(q.PG_CHILDREN, self._table)
        self._delete_record = q.pg_statement(q.PG_DELETE_RECORD, self._table)

    def __repr__(self) -> str:
        return f"PostgresJobStore({self._display!r}, schema={self._schema!r})"

    def describe(self) -> str:
        where = f"PostgreSQL {url_location(self._conninfo, default_port=5432)}"
        return f"{where} (schema {self._schema})" if self._schema else where

    @property
    def conninfo(self) -> str:
        """The ``postgresql://`` URL connected to (with its password)."""
        return self._conninfo

    def _fail(self, exc: BaseException) -> NoReturn:
        """Re-raise a driver error as StoreUnavailable/StoreError, password scrubbed, in
        one line."""
        reason = connect_failure(exc)
        if reason is not None:
            check = "check DATABASE_URL"
            if not reason.startswith("unknown host"):
                check = f"is PostgreSQL running there? {check}"
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self._display}: {reason}; {check}"
            ) from None
        detail = " ".join(scrub(f"{type(exc).__name__}: {exc}", self._secrets).split())
        if isinstance(exc, TimeoutError):
            detail = f"no answer within {self._timeout:g} s"
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | TimeoutError):
            raise StoreUnavailable(f"PostgreSQL {self._display} unavailable: {detail}") from None
        raise StoreError(f"PostgreSQL {self._display}: {detail}") from None

    async def open(self) -> None:
        async with self._open_lock:
            if self._pool is not None:
                return
            kwargs: dict[str, Any] = {
                "autocommit": True,
                "connect_timeout": max(2, math.ceil(self._timeout)),
            }
            try:
                # One direct connection first: fails fast with libpq's reason
                # (the pool would only report a timeout), then creates the table.
                async with asyncio.timeout(self._timeout):
                    conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
                async with conn:
                    await self._ensure_schema(conn)
            except (psycopg.Error, TimeoutError) as exc:
                self._fail(exc)
            pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
                self._conninfo,
                open=False,
                min_size=self._pool_min,
                max_size=self._pool_max,
                kwargs=kwargs,
                timeout=self._timeout,
                check=AsyncConnectionPool.check_connection,
                name="bullworker-store",
            )
            try:
                await pool.open(wait=True, timeout=self._timeout)
            except (psycopg.Error, TimeoutError) as exc:
                await pool.close()
                self._fail(exc)
            self._pool = pool

    async def close(self) -> None:
        async with self._open_lock:
            pool, self._pool = self._pool, None
            if pool is not None:
                await pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise StoreError(f"PostgreSQL store {self._display} is not open")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            self._fail(exc)

    async def ensure_schema(self) -> None:
        async with self._connection() as conn:
            await self._ensure_schema(conn)

    async def _ensure_schema(self, conn: Conn) -> None:
        await self._ensure_table(conn)
        await self._maintain(conn)

    async def _ensure_table(self, conn: Conn) -> None:
        cur = await conn.execute(q.PG_OBJECTS_PRESENT, (self._schema, q.PG_OBJECT_NAMES))
        row = await cur.fetchone()
        if row is not None and row[0] == len(q.PG_OBJECT_NAMES):
            cur = await conn.execute(
                q.PG_COLUMNS_PRESENT, (self._schema, q.TABLE, q.PG_ADDED_COLUMN_NAMES)
            )
            row = await cur.fetchone()
            if (
                row is not None
                and row[0] == len(q.PG_ADDED_COLUMN_NAMES)
                and await self._status_check_current(conn)
            ):
                return
        async with conn.transaction():
            await conn.execute(q.PG_DDL_LOCK, (q.DDL_LOCK_KEY,))
            if self._schema is not None:
                cur = await conn.execute(q.PG_SCHEMA_EXISTS, (self._schema,))
                exists = await cur.fetchone()
                if not (exists and exists[0]):
                    await conn.execute(q.pg_create_schema(self._schema))
            if await partitions.relkind(conn, self._schema) is None:  # a new table
                await partitions.create_partitioned(conn, self._schema, self._table)
                return
            for statement in q.pg_ddl(self._table):  # one an earlier version made
                await conn.execute(statement)
            if not await self._status_check_current(conn):  # a table older than `cancelled`
                for statement in q.pg_status_check(self._table):
                    await conn.execute(statement)

    async def _status_check_current(self, conn: Conn) -> bool:
        """Whether the status check of ``_jobs`` allows every status (see `q.STATUS_CHECK`)."""
        cur = await conn.execute(
            q.PG_STATUS_CHECK_CURRENT,
            (self._schema, q.TABLE, q.PG_STATUS_CHECK_NAME, q.NEWEST_STATUS),
        )
        row = await cur.fetchone()
        return row is not None and row[0] > 0

    async def maintain(self) -> None:
        if time.monotonic() < self._maintain_at:
            return
        async with self._connection() as conn:
            await self._maintain(conn)

    async def _maintain(self, conn: Conn) -> None:
        """Make the partitions ahead of a partitioned table; a failure (the table busy) is
        logged and tried again a minute later: the default partition takes the rows."""
        self._maintain_at = time.monotonic() + partitions.MAINTENANCE_INTERVAL
        try:
            if await partitions.relkind(conn, self._schema) == "p":
                await partitions.ensure_ahead(conn, self._schema, self._table)
        except psycopg.Error as exc:
            if conn.closed:  # the server went away: as for any statement; look again next time
                self._maintain_at = 0.0
                raise
            self._maintain_at = time.monotonic() + 60.0
            log.warning("cannot make the _jobs partitions ahead (%s); trying again later", exc)

    async def partitioned(self) -> bool:
        """Whether ``_jobs`` is partitioned (`partitions`): one made by an earlier version is
        not until `partition_table` migrates it."""
        async with self._connection() as conn:
            return await partitions.relkind(conn, self._schema) == "p"

    async def partition_table(self) -> partitions.MigrationResult:
        """Migrate an unpartitioned ``_jobs`` to a partitioned one (`partitions.migrate`)."""
        async with self._connection() as conn:
            return await partitions.migrate(conn, self._schema, self._table)

    async def insert_records(self, records: Sequence[JobRecord]) -> int:
        if not records:
            return 0
        async with self._connection() as conn:
            return await self._writer.write(conn, records)

    def _filtered(self, template: str, filters: Filters) -> tuple[psycopg.sql.Composed, list[Any]]:
        """`template` with its ``{where}`` filled from `filters`."""
        where, params = filters.where("%s", to_naive_utc)
        return q.pg_statement(template, self._table, where=where), params

    async def _select(
        self, statement: psycopg.sql.Composed, params: Sequence[Any]
    ) -> list[JobRecord]:
        async with self._connection() as conn:
            cur = await conn.execute(statement, params)
            return [_record(row) for row in await cur.fetchall()]

    async def _recent(self, filters: Filters, limit: int) -> list[JobRecord]:
        statement, params = self._filtered(q.PG_RECENT, filters)
        return await self._select(statement, [*params, limit])

    async def get(self, job_id: str) -> list[JobRecord]:
        return await self._select(self._get, (job_id,))

    async def retries_of(self, job_id: str) -> list[JobRecord]:
        return await self._select(self._retries, (job_id,))

    async def children_of(self, parent_id: str) -> list[JobRecord]:
        return await self._select(self._children, (parent_id,))

    async def _count(self, filters: Filters) -> int:
        statement, params = self._filtered(q.PG_COUNT, filters)
        async with self._connection() as conn:
            cur = await conn.execute(statement, params)
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

    async def prune(
        self, *, older_than: datetime, status: str | None = None, batch_size: int = 5000
    ) -> int:
        """`JobStore.prune`; on a partitioned table, whole day partitions are dropped when
        every row of theirs is old enough, and the others pruned one by one."""
        async with self._connection() as conn:
            kind = await partitions.relkind(conn, self._schema)
            names = sorted(await partitions.partition_names(conn, self._schema))
        if kind != "p":
            return await super().prune(older_than=older_than, status=status, batch_size=batch_size)
        check_status(status)
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        cutoff, total = to_naive_utc(older_than), 0
        for name in names:
            if status is None:  # with a status, other rows may stay: never a whole partition
                async with self._connection() as conn:
                    dropped = await partitions.drop_if_old(
                        conn, self._schema, self._table, name, cutoff
                    )
                if dropped is not None:
                    total += dropped
                    continue
            part = p.ident(self._schema, name)
            while (deleted := await self._prune_batch(older_than, status, batch_size, part)) > 0:
                total += deleted
                if deleted < batch_size:
                    break
        return total

    async def _prune_batch(
        self,
        older_than: datetime,
        status: str | None,
        limit: int,
        table: psycopg.sql.Identifier | None = None,
    ) -> int:
        status_sql = "" if status is None else q.PG_PRUNE_STATUS
        statement = q.pg_statement(q.PG_PRUNE, table or self._table, status=status_sql)
        params: list[Any] = [to_naive_utc(older_than)]
        params += [] if status is None else [status]
        params = [*params, *params, limit]
        async with self._connection() as conn:  # autocommitted: one short transaction
            return max((await conn.execute(statement, params)).rowcount, 0)

    async def delete_record(self, record: JobRecord) -> int:
        key = (
            text_of(record.id, 255),
            to_naive_utc(record.created_at),
            record.attempt,
            to_naive_utc(record.completed_at),
            record.status,
        )
        async with self._connection() as conn:
            cur = await conn.execute(self._delete_record, key)
            return max(cur.rowcount, 0)

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.execute(q.PG_PING)

    async def reachable(self) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=2
                )
            await conn.close()
        except (psycopg.Error, TimeoutError) as exc:
            self._fail(exc)
