"""``_jobs`` partitioned by day on PostgreSQL: creation, upsert, retention, migration."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bullworker.core.errors import OpsError
from bullworker.history.store import JobRecord, JobStore, PostgresJobStore, open_store, partitions
from bullworker.history.store import schema as q
from bullworker.history.store import sql_partitions as p
from bullworker.ops.partition import partition_jobs_table

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


@pytest.fixture(autouse=True)
def _same_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's day is the day these tests were collected on, even past midnight UTC."""
    monkeypatch.setattr(partitions, "today", lambda: TODAY)


def rec(
    job_id: str, created: datetime, completed: datetime | None = None, **more: Any
) -> JobRecord:
    fields: dict[str, Any] = {
        "queue": "parts",
        "queue_id": job_id,
        "attempt": 1,
        "name": "PartJob",
        "data": {"n": job_id},
        "status": "completed",
        "result": {"ok": True},
        "created_at": created,
        "should_execute_at": created,
        "executed_at": created,
        "completed_at": completed or created + timedelta(seconds=1),
    }
    fields.update(more)
    return JobRecord(**fields)


def midday(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)


def where_rows(dsn: str, schema: str) -> dict[str, str]:
    """Each row's id -> the partition it is in."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            sql.SQL('SELECT "id", tableoid::regclass::text FROM {}').format(
                sql.Identifier(schema, q.TABLE)
            )
        ).fetchall()
    return {job_id: part.split(".")[-1].strip('"') for job_id, part in rows}


def names(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(p.PG_PARTITION_NAMES, (schema, q.TABLE)).fetchall()
    return {name for (name,) in found}


def day_name(day: date) -> str:
    return p.partition_name(day)


async def add_days(store: JobStore, schema: str, *days: date) -> None:
    """Partitions of past days, as the store made them on those days (rows of theirs
    already in the default partition move in)."""
    assert isinstance(store, PostgresJobStore)
    async with await psycopg.AsyncConnection.connect(store.conninfo, autocommit=True) as conn:
        for day in days:
            async with conn.transaction():
                await partitions.add_day(conn, schema, q.pg_table(schema), day)


async def test_a_new_table_is_partitioned_by_day_with_a_default(
    store: JobStore, pg_dsn: str, pg_schema: str
) -> None:
    assert isinstance(store, PostgresJobStore) and await store.partitioned()
    ahead = {day_name(TODAY + timedelta(days=n)) for n in range(partitions.DAYS_AHEAD + 1)}
    assert names(pg_dsn, pg_schema) == ahead | {p.DEFAULT_PARTITION}
    with psycopg.connect(pg_dsn) as conn:
        key = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s "
            "AND connamespace = %s::regnamespace",
            (p.PRIMARY_KEY, pg_schema),
        ).fetchone()
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (pg_schema, q.TABLE),
        ).fetchall()
    assert key == ('PRIMARY KEY (id, "createdAt", attempt)',)
    assert {name for name, _ in q.INDEXES} <= {name for (name,) in indexes}


async def test_rows_land_in_the_partition_of_their_day(
    store: JobStore, pg_dsn: str, pg_schema: str
) -> None:
    records = [
        rec("today", midday(TODAY)),
        rec("tomorrow", midday(TODAY + timedelta(days=1))),
        rec("midnight", datetime.combine(TODAY + timedelta(days=2), datetime.min.time(), UTC)),
        rec("old", NOW - timedelta(days=40), NOW),  # no partition for that day
    ]
    assert await store.insert_records(records) == 4
    assert where_rows(pg_dsn, pg_schema) == {
        "parts:today": day_name(TODAY),
        "parts:tomorrow": day_name(TODAY + timedelta(days=1)),
        "parts:midnight": day_name(TODAY + timedelta(days=2)),
        "parts:old": p.DEFAULT_PARTITION,
    }
    # That day's partition made later takes its rows out of the default one.
    await add_days(store, pg_schema, (NOW - timedelta(days=40)).date())
    assert where_rows(pg_dsn, pg_schema)["parts:old"] == day_name((NOW - timedelta(days=40)).date())
    assert [r.id for r in await store.get("parts:old")] == ["parts:old"]


async def test_an_attempt_keeps_one_row_and_gets_its_later_log_lines(
    store: JobStore, pg_dsn: str, pg_schema: str
) -> None:
    first = rec("1", midday(TODAY), logs=["a"])
    assert await store.insert_records([first]) == 1
    more = rec("1", midday(TODAY), logs=["a", "b"], progress=50)
    assert await store.insert_records([more, rec("2", midday(TODAY))]) == 2
    assert await store.insert_records([more]) == 0  # the same again: nothing to write
    other_run = rec("1", midday(TODAY), NOW + timedelta(hours=1), logs=["x", "y", "z"])
    assert await store.insert_records([other_run]) == 0  # another finish: not this row's
    [row] = await store.get("parts:1")
    assert (row.logs, row.progress, row.completed_at) == (["a", "b"], 50, more.completed_at)
    # One key twice in one batch: as if inserted one after the other.
    twice = [rec("3", midday(TODAY), logs=["a"]), rec("3", midday(TODAY), logs=["a", "b"])]
    assert await store.insert_records(twice) == 2
    [row] = await store.get("parts:3")
    assert row.logs == ["a", "b"]
    # Times a microsecond apart are one key once stored to the millisecond.
    close = [
        rec("4", midday(TODAY), logs=["a"]),
        rec("4", midday(TODAY) + timedelta(microseconds=1)),
    ]
    assert await store.insert_records(close) == 1
    assert len(await store.get("parts:4")) == 1
    assert list(where_rows(pg_dsn, pg_schema).values()).count(day_name(TODAY)) == 4


async def test_retention_drops_old_days_and_deletes_only_at_the_boundary(
    store: JobStore, pg_dsn: str, pg_schema: str
) -> None:
    cutoff = midday(TODAY - timedelta(days=5))
    old_day, late_day, edge_day = (TODAY - timedelta(days=n) for n in (10, 8, 5))
    records = [
        *(rec(f"old{i}", midday(old_day) + timedelta(minutes=i)) for i in range(4)),
        rec("late0", midday(late_day)),
        rec("late1", midday(late_day), NOW),  # delayed a week: finished after the cut-off
        rec("edge0", midday(edge_day) - timedelta(hours=2)),  # before the cut-off
        rec("edge1", midday(edge_day) + timedelta(hours=2)),  # after it
        rec("default0", NOW - timedelta(days=40)),
        rec("default1", NOW - timedelta(days=40), NOW),
        rec("now", NOW),
        rec("failed", midday(late_day), status="failed", result={"reason": "E: x"}),
    ]
    await store.insert_records(records)
    await add_days(store, pg_schema, old_day, late_day, edge_day)
    keep = {r.id for r in records if r.completed_at >= cutoff}
    before = names(pg_dsn, pg_schema)

    # A status: nothing dropped whole, only that status's old rows deleted.
    assert await store.prune(older_than=cutoff, status="failed", batch_size=2) == 1
    assert names(pg_dsn, pg_schema) == before

    deleted = await store.prune(older_than=cutoff, batch_size=2)
    assert deleted == len(records) - 1 - len(keep)  # as one DELETE would: the same rows
    assert set(where_rows(pg_dsn, pg_schema)) == keep
    assert names(pg_dsn, pg_schema) == before - {day_name(old_day)}  # dropped whole
    assert where_rows(pg_dsn, pg_schema)["parts:late1"] == day_name(late_day)
    assert await store.prune(older_than=cutoff) == 0


async def test_an_old_table_works_as_before_then_migrates_keeping_every_row(
    pg_dsn: str, pg_schema: str
) -> None:
    table = q.pg_table(pg_schema)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in q.pg_ddl(table):  # as an earlier version made it
            conn.execute(statement)
    store = open_store(pg_dsn, pg_schema=pg_schema)
    assert isinstance(store, PostgresJobStore)
    records = [
        rec(f"r{n}", NOW - timedelta(days=n, hours=n), logs=[f"line {n}"]) for n in range(0, 120, 3)
    ]
    async with store:
        assert not await store.partitioned()
        assert await store.insert_records(records) == len(records)
        assert await store.prune(older_than=NOW - timedelta(days=110)) == 4
        await store.maintain()  # nothing to do on an unpartitioned table
        before = {
            (r.id, r.created_at, r.attempt, tuple(r.logs or ()))
            for r in await store.recent(limit=1000)
        }
        assert len(before) == len(records) - 4

        result = await partition_jobs_table(store)
        assert (result.rows, result.already) == (len(before), False)
        assert await store.partitioned()
        after = {
            (r.id, r.created_at, r.attempt, tuple(r.logs or ()))
            for r in await store.recent(limit=1000)
        }
        assert after == before
        placed = where_rows(pg_dsn, pg_schema)
        assert placed["parts:r0"] == day_name(TODAY)
        assert placed["parts:r102"] == p.DEFAULT_PARTITION  # older than MIGRATION_DAYS_BACK
        assert placed["parts:r30"] == day_name((NOW - timedelta(days=30, hours=30)).date())

        again = await partition_jobs_table(store)
        assert (again.rows, again.already) == (0, True)
        assert await store.insert_records([rec("new", NOW)]) == 1
        assert await store.count() == len(before) + 1
    async with open_store(pg_dsn, pg_schema=pg_schema) as reopened:  # the fast path
        assert await reopened.count() == len(before) + 1
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (pg_schema, p.OLD_TABLE),
        ).fetchall()
    assert tables == []


async def test_concurrent_opens_and_the_partitions_ahead(pg_dsn: str, pg_schema: str) -> None:
    stores = [open_store(pg_dsn, pg_schema=pg_schema) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        ahead = {day_name(TODAY + timedelta(days=n)) for n in range(partitions.DAYS_AHEAD + 1)}
        assert names(pg_dsn, pg_schema) == ahead | {p.DEFAULT_PARTITION}
        # A day whose partition is missing: its rows go to the default partition, and
        # the next maintenance makes the partition and moves them in.
        tomorrow = TODAY + timedelta(days=1)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP TABLE {}").format(sql.Identifier(pg_schema, day_name(tomorrow)))
            )
        await stores[0].insert_records([rec("t", midday(tomorrow))])
        assert where_rows(pg_dsn, pg_schema) == {"parts:t": p.DEFAULT_PARTITION}
        await stores[1].maintain()  # not due yet: opened a moment ago
        assert day_name(tomorrow) not in names(pg_dsn, pg_schema)
        for store in stores:
            store._maintain_at = 0.0  # type: ignore[attr-defined]
        await asyncio.gather(*(s.maintain() for s in stores))
        assert where_rows(pg_dsn, pg_schema) == {"parts:t": day_name(tomorrow)}
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_sqlite_is_not_partitioned(tmp_path: Any) -> None:
    async with open_store(f"sqlite:///{tmp_path}/jobs.sqlite3") as store:
        await store.maintain()  # nothing to do
        with pytest.raises(OpsError, match="PostgreSQL only"):
            await partition_jobs_table(store)
