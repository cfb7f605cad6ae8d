"""``_jobs`` tables created before the ``cancelled`` status take cancelled rows once a store
opens them: PostgreSQL gets a new status check, SQLite a copy of the table with one."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bullworker.history.store import open_store
from bullworker.history.store import schema as q
from bullworker.ops.cancel import cancel_job
from tests.integration.cancel_app import CancelQuick
from tests.integration.cancel_support import QUEUE, local_app
from tests.integration.ops_support import row

#: The status check of the first releases.
OLD_CHECK = """CHECK ("status" IN ('completed', 'failed'))"""
OLD_COLUMNS = '"id", "queue", "queueId", "attempt", "name", "data", "status", "result", ' \
    '"createdAt", "shouldExecuteAt", "completedAt"'  # fmt: skip


def old_ddl(create_table: str) -> str:
    """A CREATE TABLE of the first release: the old check, and none of the added columns."""
    ddl = create_table.replace(q.STATUS_CHECK, OLD_CHECK)
    for column, _, _ in q.ADDED_COLUMNS:
        ddl = "\n".join(line for line in ddl.splitlines() if f'"{column}"' not in line)
    assert OLD_CHECK in ddl and '"logs"' not in ddl
    return ddl


def test_the_create_tables_allow_every_status() -> None:
    from bullworker.core.status import STATUSES

    assert STATUSES == ("completed", "failed", "cancelled")
    assert all(f"'{status}'" in q.STATUS_CHECK for status in STATUSES)
    assert q.NEWEST_STATUS in q.STATUS_CHECK
    assert q.STATUS_CHECK in q.PG_CREATE_TABLE and q.STATUS_CHECK in q.SQLITE_CREATE_TABLE


async def test_an_old_postgresql_table_takes_cancelled_rows(
    prefix: str, pg_dsn: str, pg_schema: str
) -> None:
    table = sql.Identifier(pg_schema, "_jobs")
    old = row("old", age=timedelta(days=1))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(old_ddl(q.PG_CREATE_TABLE)).format(table=table))
        conn.execute(
            sql.SQL(
                "INSERT INTO {table} (" + OLD_COLUMNS + ") VALUES "
                "('ops:old', 'ops', 'old', 1, 'OpsEcho', '{{}}', 'completed', 'null', "
                "%s, %s, %s)"
            ).format(table=table),
            (old.created_at, old.created_at, old.completed_at),
        )
    async with local_app(prefix, pg_dsn, pg_schema) as app:
        job_id = await app.worker_service.queue_job(CancelQuick, {"n": 1})
        outcome = await cancel_job(app.config, QUEUE, job_id, "old table")
    assert (outcome.action, outcome.recorded) == ("removed", True)

    store = open_store(pg_dsn, pg_schema=pg_schema)
    async with store:
        assert [r.status for r in await store.get(f"{QUEUE}:{job_id}")] == ["cancelled"]
        assert [r.status for r in await store.get("ops:old")] == ["completed"]
        await store.ensure_schema()  # again: the fast path
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        checks = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'c'",
            (f'"{pg_schema}"."_jobs"',),
        ).fetchall()
        assert len(checks) == 1 and "'cancelled'" in checks[0][0]
        with pytest.raises(psycopg.errors.CheckViolation):  # still checked
            conn.execute(sql.SQL("UPDATE {table} SET \"status\" = 'done'").format(table=table))


async def test_an_old_sqlite_table_takes_cancelled_rows(
    prefix: str, pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(old_ddl(q.SQLITE_CREATE_TABLE))
        conn.execute(
            'INSERT INTO "_jobs" (' + OLD_COLUMNS + ") VALUES "
            "('ops:old', 'ops', 'old', 1, 'OpsEcho', '{}', 'completed', 'null', ?, ?, ?)",
            ("2026-01-01 00:00:00.000", "2026-01-01 00:00:00.000", "2026-01-01 00:00:01.000"),
        )
    conn.close()
    async with local_app(prefix, "", pg_schema, sqlite_path=str(path)) as app:
        assert app.config.database_url in (None, "")
        job_id = await app.worker_service.queue_job(CancelQuick, {"n": 1}, delay=60_000)
        outcome = await cancel_job(app.config, QUEUE, job_id, "old file")
    assert (outcome.action, outcome.recorded) == ("removed", True)

    store = open_store(None, sqlite_path=str(path))
    async with store:
        [cancelled] = await store.get(f"{QUEUE}:{job_id}")
        assert (cancelled.status, cancelled.reason) == ("cancelled", "JobCancelled: old file")
        [kept] = await store.get("ops:old")
        assert (kept.status, kept.recorded_at is not None) == ("completed", True)
        assert await store.count(status="cancelled") == 1
    with sqlite3.connect(path) as conn:
        [(ddl,)] = conn.execute(q.SQLITE_TABLE_SQL).fetchall()
        assert q.STATUS_CHECK in ddl
        indexes = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '_jobs' "
            "AND sql IS NOT NULL")}  # fmt: skip
        assert indexes == {name for name, _ in q.INDEXES}
        with pytest.raises(sqlite3.IntegrityError):  # still checked
            conn.execute("""UPDATE "_jobs" SET "status" = 'done'""")
    conn.close()
