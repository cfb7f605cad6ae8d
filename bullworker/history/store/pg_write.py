"""The PostgreSQL store's batched insert: rows of `JobRecord`, one ``COPY`` and one upsert.

A batch is copied (binary ``COPY``) into a temporary staging table of the connection,
then moved into ``_jobs`` by one ``INSERT ... SELECT ... ON CONFLICT`` with the rule
of `schema.PG_INSERT`. Measured on a small machine (500-row batches, as the
recorder writes them): about 3x the rows per second of the pipelined one-row
inserts it replaces, at a fraction of their CPU. A batch that holds one key twice
goes row by row instead (one statement cannot update a row twice), so that its
result is what inserting its rows in order gives.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from bullworker.history.store import schema as q
from bullworker.history.store import sql_partitions as p
from bullworker.history.store.base import JobRecord, to_naive_utc

Conn = psycopg.AsyncConnection[TupleRow]
Row = tuple[Any, ...]


def text_of(value: str, limit: int) -> str:
    """Fit `value` into varchar(limit): PostgreSQL rejects NUL and overlong text."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:limit]


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: Any) -> str:
    """JSON for jsonb, which cannot hold ``\\u0000``: such characters are dropped."""
    text = _ENCODE(value)
    if "\\u0000" in text:
        text = _ENCODE(_without_nul(value))
    return text


def jsonb(value: Any) -> Jsonb | None:
    """A jsonb parameter, None for SQL NULL."""
    return None if value is None else Jsonb(value, dumps=_dumps)


def _jsonb_binary(value: Any) -> bytes | None:
    """A jsonb field of a binary ``COPY``: format version 1, then the JSON text."""
    return None if value is None else b"\x01" + _dumps(value).encode()


def _naive(value: datetime | None) -> datetime | None:
    return None if value is None else to_naive_utc(value)


def rows_of(records: Sequence[JobRecord], json_of: Callable[[Any], Any] = jsonb) -> list[Row]:
    """The values of `schema.INSERT_COLUMNS` for each record, in key order; ``json_of``
    makes those of the jsonb columns."""
    rows = [
        (
            text_of(r.id, 255),
            text_of(r.queue, 255),
            text_of(r.queue_id, 255),
            r.attempt,
            text_of(r.name, 255),
            json_of(r.data),
            None if r.trace_id is None else text_of(r.trace_id, 32),
            r.status,
            json_of(r.result),
            to_naive_utc(r.created_at),
            to_naive_utc(r.should_execute_at),
            _naive(r.executed_at),
            to_naive_utc(r.completed_at),
            None if r.retry_of is None else text_of(r.retry_of, 255),
            json_of(r.progress),
            json_of(r.logs),
            None if r.parent is None else text_of(r.parent, 255),
        )
        for r in records
    ]
    # Primary-key order: two recorders inserting overlapping batches cannot deadlock.
    rows.sort(key=lambda row: (row[0], row[9], row[3]))
    return rows


class BatchWriter:
    """Writes batches into one ``_jobs`` (`table`) through its store's connections."""

    def __init__(self, table: sql.Identifier) -> None:
        self._table = table
        self._one_row = q.pg_statement(q.PG_INSERT, table)
        self._create_stage = p.pg(p.PG_CREATE_STAGE, table=table)
        self._copy = p.PG_COPY_STAGE + " (FORMAT BINARY)"
        self._upsert = q.pg_statement(p.PG_INSERT_STAGED, table)
        #: The pool's connections that have the staging table.
        self._staged: weakref.WeakSet[Conn] = weakref.WeakSet()

    async def write(self, conn: Conn, records: Sequence[JobRecord]) -> int:
        """Insert or update `records` in one transaction; returns the rows written."""
        rows = rows_of(records, _jsonb_binary)
        # The keys as stored (ids cut to 255 characters, times to the millisecond).
        if len({(row[0], row[9], row[3]) for row in rows}) < len(rows):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(self._one_row, rows_of(records))  # pipelined
                return max(cur.rowcount, 0)  # summed over the batch
        staged = conn in self._staged
        async with conn.transaction(), conn.cursor() as cur:
            if not staged:  # the connection's first batch (the table lives as long as it)
                await cur.execute(self._create_stage)
            async with cur.copy(self._copy) as copy:
                copy.set_types(p.INSERT_TYPES)
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(self._upsert)
            written = max(cur.rowcount, 0)
        self._staged.add(conn)  # committed: the staging table exists
        return written
