"""Keeping ``_jobs`` in shape: prune, leader retention, the added columns, durations."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql

from bullworker.core import keys
from bullworker.core.durations import DurationError, parse_duration, parse_since
from bullworker.history.recording import RecordingService
from bullworker.history.store import JobStore, open_store
from bullworker.history.store import schema as q
from tests.helpers import app_config, eventually
from tests.integration.ops_support import APP, bullworker, failed_row, ok_json, row

# --------------------------------------------------------------------------- prune + retention


async def test_prune_deletes_only_old_rows(env: dict[str, str], store: JobStore) -> None:
    old = [row(f"old{i}", age=timedelta(days=40)) for i in range(5)]
    old_failed = [failed_row(f"oldf{i}", age=timedelta(days=31)) for i in range(3)]
    recent = [row("new", age=timedelta(days=29)), failed_row("newf")]
    await store.insert_records([*old, *old_failed, *recent])

    dry = await bullworker(env, "prune", "--older-than", "30d", "--dry-run", "--app", APP)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would delete 8 row(s) finished before ")
    assert await store.count() == 10

    failed_only = await ok_json(
        env, "prune", "--older-than", "30d", "--status", "failed", "--batch-size", "2"
    )
    assert failed_only["rows"] == 3 and failed_only["status"] == "failed"
    assert not failed_only["dryRun"]
    cutoff = datetime.fromisoformat(failed_only["cutoff"].replace("Z", "+00:00"))
    assert abs(cutoff - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=1)

    result = await bullworker(env, "prune", "--older-than", "30d", "--batch-size", "2", "--app", APP)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 5 row(s) finished before ")
    assert sorted(r.queue_id for r in await store.recent()) == ["new", "newf"]


async def test_retention_is_applied_by_the_leader_only(
    prefix: str, pg_dsn: str, pg_schema: str, store: JobStore, redis_client: aioredis.Redis
) -> None:
    await store.insert_records(
        [row("old", age=timedelta(days=8)), failed_row("recent"), row("new", age=timedelta(days=6))]
    )
    config = app_config(
        bull_prefix=prefix,
        database_url=pg_dsn,
        database_schema=pg_schema,
        jobs_retention="7d",
        jobs_retention_interval=0.1,
        leader_ttl=2,
    )
    # Someone else records the queue: this process must not prune.
    lock = keys.leader_key(prefix, "ops")
    await redis_client.set(lock, "someone-else", px=60_000)
    service = RecordingService(config, ["ops"])
    await service.start()
    try:
        await asyncio.sleep(1.0)
        assert not service.is_leader
        assert await store.count() == 3
        await redis_client.delete(lock)

        async def pruned() -> bool:
            return await store.count() == 2

        await eventually(pruned, timeout=10)
        assert service.is_leader
        assert sorted(r.queue_id for r in await store.recent()) == ["new", "recent"]
    finally:
        await service.stop()


async def test_retention_survives_an_unreachable_database(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = app_config(
        bull_prefix=prefix,
        database_url="postgresql://postgres:secret@127.0.0.1:1/test",
        jobs_retention="1d",
        jobs_retention_interval=0.1,
    )
    service = RecordingService(config, ["ops"])
    caplog.set_level(logging.ERROR, logger="bullworker.recording")
    await service.start()
    try:
        await eventually(lambda: "retention failed" in caplog.text, timeout=10)
        assert service._retention is not None and not service._retention.done()
        assert "secret" not in caplog.text
    finally:
        await service.stop()


# --------------------------------------------------------------------------- store migration


async def test_an_existing_jobs_table_gets_the_added_columns(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    # The table as first released: none of the columns added since (retryOf, progress,
    # logs, parent), nor their indexes.
    added = [name for name, _, _ in q.ADDED_COLUMNS]
    assert added == ["retryOf", "progress", "logs", "parent"]
    old_pg, old_sqlite = q.PG_CREATE_TABLE, q.SQLITE_CREATE_TABLE
    for name, pg_type, sqlite_type in q.ADDED_COLUMNS:
        old_pg = old_pg.replace(f'    "{name}" {pg_type},\n', "")
        old_sqlite = old_sqlite.replace(f'    "{name}" {sqlite_type},\n', "")
    assert not any(f'"{name}"' in old_pg + old_sqlite for name in added)
    table = sql.Identifier(pg_schema, q.TABLE)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(old_pg).format(table=table))
        for statement in q.pg_ddl(table)[1:]:  # the indexes of the time, not the columns'
            text = statement.as_string(conn)
            if "ADD COLUMN" not in text and not any(f'"{name}"' in text for name in added):
                conn.execute(statement)
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(old_sqlite)
    conn.close()
    logs = ["first line", "héllo 🎉"]
    for job_store in (open_store(pg_dsn, pg_schema=pg_schema), open_store(f"sqlite:///{path}")):
        async with job_store:
            first = row(
                "1", age=timedelta(0), retry_of="ops:0", progress={"done": 3}, logs=logs,
                parent="flows:9",
            )  # fmt: skip
            await job_store.insert_records([first, row("2", age=timedelta(0))])
            [again] = await job_store.get("ops:1")
            assert (again.retry_of, again.progress, again.logs) == ("ops:0", {"done": 3}, logs)
            assert again.parent == "flows:9"
            assert [r.id for r in await job_store.children_of("flows:9")] == ["ops:1"]
            [plain] = await job_store.get("ops:2")
            assert (plain.retry_of, plain.progress, plain.logs) == (None, None, None)
            assert plain.parent is None
        async with job_store:  # opening again is a no-op
            assert await job_store.count() == 2
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,)
        )
        assert {name for name, _ in q.INDEXES} <= {name for (name,) in indexes}
    lite = sqlite3.connect(path)
    indexes = lite.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    assert {name for name, _ in q.INDEXES} <= {name for (name,) in indexes}
    lite.close()


# --------------------------------------------------------------------------- durations


def test_parse_duration() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 1h30m ") == timedelta(minutes=90)
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration("0.5s") == timedelta(milliseconds=500)
    for bad in ("", "30", "d", "3x", "-1d", "0s", "1h 2"):
        with pytest.raises(DurationError, match="invalid duration"):
            parse_duration(bad)


def test_parse_since() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("1h", now=now) == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert parse_since("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(DurationError, match="or an ISO datetime"):
        parse_since("yesterday")
