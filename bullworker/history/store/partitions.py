"""Daily partitions of ``_jobs`` on PostgreSQL: made ahead, dropped by retention, migration.

A new ``_jobs`` is partitioned by RANGE on ``"createdAt"``, a partition a UTC day
(`sql_partitions` says why), with a DEFAULT partition so that an insert never
fails: it takes the rows of days that have no partition (before the table
existed, or whose partition retention dropped while a long-delayed job of that
day was still running). The store makes today's partition and the next
`DAYS_AHEAD` days' when it opens, and again at most every `MAINTENANCE_INTERVAL`
(`JobStore.maintain`, which the recorder calls before it writes).

Retention keeps the meaning of a ``DELETE ... WHERE "completedAt" < cutoff``: a
day's partition entirely before the cut-off is dropped whole when it has no row
finished at or after it (its ``"completedAt"`` index answers); every other one
that has older rows is pruned by the usual short ``DELETE`` batches, partition by
partition. An unpartitioned table made by an earlier version keeps working as it
did; `migrate` turns it into a partitioned one.

Every DDL statement runs under the store's advisory lock (`schema.DDL_LOCK_KEY`)
and `sql_partitions.LOCK_TIMEOUT`: a busy table makes it give up and try later,
rather than hold inserts queued behind it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from bullworker.core.errors import StoreError
from bullworker.history.store import schema as q
from bullworker.history.store import sql_partitions as p

log = logging.getLogger("bullworker.store")

Conn = psycopg.AsyncConnection[TupleRow]

#: Days after today that have their partition ready.
DAYS_AHEAD = 7
#: Seconds between two looks at whether the partitions ahead are there.
MAINTENANCE_INTERVAL = 3600.0
#: How far back `migrate` makes daily partitions; older rows go to the default partition
#: (where retention deletes them row by row).
MIGRATION_DAYS_BACK = 90


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What `migrate` did: ``rows`` copied into ``partitions`` day partitions, or nothing
    when the table was partitioned already (``already``)."""

    rows: int
    partitions: int
    already: bool
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "partitions": self.partitions,
            "alreadyPartitioned": self.already,
            "seconds": round(self.seconds, 3),
        }


def day_of(name: str) -> date | None:
    """The day of the partition ``_jobs_p20261205``; None for the default one (or another)."""
    if not name.startswith(p.PARTITION_PREFIX):
        return None
    try:
        return datetime.strptime(name[len(p.PARTITION_PREFIX) :], p.PARTITION_DATE).date()
    except ValueError:
        return None


def today() -> date:
    """Today in UTC, the zone of ``"createdAt"``."""
    return datetime.now(UTC).date()


async def _one(conn: Conn, statement: Any, params: Any = None) -> Any:
    row = await (await conn.execute(statement, params)).fetchone()
    return None if row is None else row[0]


async def relkind(conn: Conn, schema: str | None) -> str | None:
    """``p`` when ``_jobs`` is partitioned, ``r`` for a plain table, None when missing."""
    kind = await _one(conn, p.PG_RELKIND, (schema, q.TABLE))
    return None if kind is None else str(kind)


async def partition_names(conn: Conn, schema: str | None) -> set[str]:
    """Names of the partitions of ``_jobs``."""
    cur = await conn.execute(p.PG_PARTITION_NAMES, (schema, q.TABLE))
    return {str(name) for (name,) in await cur.fetchall()}


def _midnight(day: date) -> datetime:
    """The start of ``day``, naive UTC as ``"createdAt"`` holds it."""
    return datetime.combine(day, datetime.min.time())


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


async def create_partitioned(
    conn: Conn, schema: str | None, table: sql.Identifier, first: date | None = None
) -> int:
    """In the caller's transaction: the partitioned ``_jobs`` with the day partitions from
    ``first`` (default today) to `DAYS_AHEAD` days ahead, its default partition and its
    indexes. Returns the number of day partitions."""
    await conn.execute(p.pg(p.PG_CREATE_PARTITIONED, table=table))
    days = _days(first or today(), today() + timedelta(days=DAYS_AHEAD))
    for day in days:  # before the default partition: nothing to check in it yet
        await conn.execute(
            p.pg_create_partition(table, p.ident(schema, p.partition_name(day)), day)
        )
    await conn.execute(p.pg_create_default(table, p.ident(schema, p.DEFAULT_PARTITION)))
    for statement in q.pg_ddl(table)[1:]:  # ADD COLUMN (no-op) and the indexes
        await conn.execute(statement)
    return len(days)


async def ensure_ahead(conn: Conn, schema: str | None, table: sql.Identifier) -> list[str]:
    """Make the partitions of today and `DAYS_AHEAD` days ahead that are missing (on an
    autocommit connection); returns their names."""
    wanted = {p.partition_name(d): d for d in _days(today(), today() + timedelta(days=DAYS_AHEAD))}
    if not set(wanted) - await partition_names(conn, schema):
        return []
    made = []
    async with conn.transaction():
        await conn.execute(p.LOCK_TIMEOUT)
        await conn.execute(q.PG_DDL_LOCK, (q.DDL_LOCK_KEY,))
        present = await partition_names(conn, schema)  # another store may have made them
        for name, day in wanted.items():
            if name not in present:
                await add_day(conn, schema, table, day)
                made.append(name)
    if made:
        log.info("made _jobs partition(s) %s", ", ".join(made))
    return made


async def add_day(conn: Conn, schema: str | None, table: sql.Identifier, day: date) -> None:
    """The partition of ``day``; rows of that day in the default partition move into it first
    (PostgreSQL refuses a partition whose rows the default one holds)."""
    part, default = p.ident(schema, p.partition_name(day)), p.ident(schema, p.DEFAULT_PARTITION)
    bounds = (_midnight(day), _midnight(day + timedelta(days=1)))
    if not await _one(conn, p.pg(p.PG_DEFAULT_HAS_DAY, table=default), bounds):
        await conn.execute(p.pg_create_partition(table, part, day))
        return
    await conn.execute(p.pg(p.PG_CREATE_DETACHED, part=part, table=table))
    await conn.execute(p.pg(p.PG_MOVE_DAY, default=default, part=part), bounds)
    await conn.execute(p.pg_attach_partition(table, part, day))


async def drop_if_old(
    conn: Conn, schema: str | None, table: sql.Identifier, name: str, cutoff: datetime
) -> int | None:
    """Drop the day partition ``name`` if all its rows finished before ``cutoff`` (naive
    UTC); returns how many rows it had, or None when it must be pruned row by row instead
    (a row at or after the cut-off, a day not entirely before it, or a busy table)."""
    day = day_of(name)
    if day is None or _midnight(day + timedelta(days=1)) > cutoff:
        return None
    part = p.ident(schema, name)
    if await _one(conn, p.pg(p.PG_ANY_FROM, table=part), (cutoff,)):
        return None  # without locking the table (rows are only ever added to such a day)
    try:
        async with conn.transaction():
            await conn.execute(p.LOCK_TIMEOUT)
            await conn.execute(q.PG_DDL_LOCK, (q.DDL_LOCK_KEY,))
            # No insert between the look and the drop: the table is locked first.
            await conn.execute(p.pg(p.PG_LOCK_EXCLUSIVE, table=table))
            if await _one(conn, p.pg(p.PG_ANY_FROM, table=part), (cutoff,)):
                return None
            rows = int(await _one(conn, p.pg(p.PG_COUNT_ALL, table=part)))
            await conn.execute(p.pg(p.PG_DROP, table=part))
    except psycopg.errors.LockNotAvailable:
        log.info("_jobs busy: partition %s pruned row by row instead of dropped", name)
        return None
    log.info("dropped _jobs partition %s (%d rows)", name, rows)
    return rows


async def migrate(conn: Conn, schema: str | None, table: sql.Identifier) -> MigrationResult:
    """Turn an unpartitioned ``_jobs`` into a partitioned one holding the same rows, in one
    transaction (reads and writes of the table wait until it ends); nothing to do when it
    is partitioned already. The copy is checked (same number of rows) before the old
    table is dropped."""
    began = time.perf_counter()
    async with conn.transaction():
        await conn.execute(q.PG_DDL_LOCK, (q.DDL_LOCK_KEY,))
        kind = await relkind(conn, schema)
        if kind == "p":
            return MigrationResult(rows=0, partitions=0, already=True)
        if kind is None:
            raise StoreError("_jobs does not exist: a store creates it partitioned when it opens")
        old = p.ident(schema, p.OLD_TABLE)
        await conn.execute(p.pg(p.PG_LOCK_FOR_MIGRATION, table=table))
        await conn.execute(p.pg(p.PG_RENAME_TABLE, table=table, name=sql.Identifier(p.OLD_TABLE)))
        await conn.execute(
            p.pg(
                p.PG_RENAME_CONSTRAINT,
                table=old,
                old=sql.Identifier(p.PRIMARY_KEY),
                new=sql.Identifier(p.OLD_TABLE + "_pkey"),
            )
        )
        for index, _ in q.INDEXES:  # their names go to the new table's indexes
            await conn.execute(p.pg(p.PG_DROP_INDEX, index=p.ident(schema, index)))
        first = await _one(conn, p.pg(p.PG_FIRST_DAY, table=old))
        earliest = today() - timedelta(days=MIGRATION_DAYS_BACK)
        first = today() if first is None else min(max(first, earliest), today())
        # The indexes come after the copy: built once, faster than kept up row by row.
        await conn.execute(p.pg(p.PG_CREATE_PARTITIONED, table=table))
        days = _days(first, today() + timedelta(days=DAYS_AHEAD))
        for day in days:
            await conn.execute(
                p.pg_create_partition(table, p.ident(schema, p.partition_name(day)), day)
            )
        await conn.execute(p.pg_create_default(table, p.ident(schema, p.DEFAULT_PARTITION)))
        copied = (await conn.execute(p.pg(p.PG_COPY_ALL, new=table, old=old))).rowcount
        had = int(await _one(conn, p.pg(p.PG_COUNT_ALL, table=old)))
        if copied != had:  # rolled back with the transaction
            raise StoreError(f"migration copied {copied} of {had} _jobs rows; nothing changed")
        await conn.execute(p.pg(p.PG_DROP, table=old))
        for statement in q.pg_ddl(table)[1:]:
            await conn.execute(statement)
    await conn.execute(p.pg(p.PG_ANALYZE, table=table))  # plans for the new partitions
    seconds = time.perf_counter() - began
    log.info("_jobs partitioned: %d rows in %d day partitions, %.1f s", copied, len(days), seconds)
    return MigrationResult(rows=copied, partitions=len(days), already=False, seconds=seconds)
