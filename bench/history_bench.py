"""Item 16.4: a partitioned ``_jobs`` on PostgreSQL at 0, 1M and 10M rows.

In a schema of its own, ``_jobs`` is made partitioned as a store makes it (a
partition a day), with the partitions of the last 30 days too. At each size the
table is filled up to it in one ``INSERT ... SELECT`` from ``generate_series``
(the rows of `bench.dashboard_bench`, spread at random over the 30 days, its
secondary indexes dropped before and built again after, as a bulk load is done),
then two things are measured:

- the store's insert: `PostgresJobStore.insert_records` of batches of the
  recorder's default size, rows created now (so into today's partition), rows/s
  per repeat of `BATCHES` batches;
- the dashboard's job list (`bench.dashboard_bench.CASES` through the dashboard's
  ASGI app), first and deep pages, p50/p95.

Flat from 0 to 10M rows is the goal: the insert goes into one day's partition and
its indexes, and a list page reads the newest rows of each partition's index.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import DATABASE_URL, Plan, own_prefix, own_schema
from bench.dashboard_bench import ROWS_SQL, measure_pages

#: Days of rows behind now (each has its partition).
DAYS = 30
#: Batches of one insert measurement.
BATCHES = 40

#: Spread at random over the last ``{days}`` days.
FILL_SQL = ROWS_SQL.replace(
    "{times}",
    "SELECT g, (now() at time zone 'utc') - random() * interval '{days} days' AS t "
    "FROM generate_series(%s::bigint, %s::bigint) AS g",
)
COUNT_SQL = 'SELECT count(*) FROM "{schema}"."_jobs"'
#: Bytes of every partition with its indexes (the partitioned parent itself holds none).
PARTITION_SIZES_SQL = """
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
WHERE i.inhparent = %s::regclass"""


def _records(n: int, start: int) -> list[Any]:
    """``n`` records as the recorder makes them from finished no-op jobs, created now."""
    from bullworker.history.store import JobRecord

    now = datetime.now(UTC)
    created, executed = now - timedelta(milliseconds=20), now - timedelta(milliseconds=5)
    return [
        JobRecord(
            queue="bench",
            queue_id=str(start + i),
            attempt=1,
            name="NoopJob",
            data={"n": start + i, "email": "user@example.com"},
            status="completed",
            result={"ok": True},
            created_at=created,
            should_execute_at=created,
            executed_at=executed,
            completed_at=now,
        )
        for i in range(n)
    ]


async def _make_table(conn: Any, schema: str) -> None:
    """The partitioned ``_jobs`` with the last `DAYS` days' partitions, no secondary index."""
    from bullworker.history.store import partitions
    from bullworker.history.store import schema as q
    from bullworker.history.store import sql_partitions as p

    table = q.pg_table(schema)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    async with conn.transaction():
        await partitions.create_partitioned(conn, schema, table)
        for n in range(1, DAYS + 1):
            await partitions.add_day(conn, schema, table, partitions.today() - timedelta(days=n))
        for index, _ in q.INDEXES:
            await conn.execute(p.pg(p.PG_DROP_INDEX, index=p.ident(schema, index)))


async def _fill(conn: Any, schema: str, have: int, want: int) -> dict[str, float]:
    """Rows ``have + 1`` to ``want``; the secondary indexes dropped first, built after."""
    from bullworker.history.store import schema as q
    from bullworker.history.store import sql_partitions as p

    table = q.pg_table(schema)
    for index, _ in q.INDEXES:
        await conn.execute(p.pg(p.PG_DROP_INDEX, index=p.ident(schema, index)))
    began = time.perf_counter()
    if want > have:
        sql = FILL_SQL.format(schema=schema, days=DAYS)
        await conn.execute(sql, (have + 1, want))
    inserted = time.perf_counter() - began
    began = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '256MB'")
    for statement in q.pg_ddl(table)[1:]:
        await conn.execute(statement)
    indexed = time.perf_counter() - began
    await conn.execute(f'VACUUM ANALYZE "{schema}"."_jobs"')  # as autovacuum would
    return {"fill_s": round(inserted, 1), "index_s": round(indexed, 1)}


async def _inserts(store: Any, batch: int, repeats: int, start: int) -> dict[str, Any]:
    """Rows/s of `BATCHES` batches of ``batch`` records, per repeat."""
    rates, cpu = [], []
    for r in range(repeats):
        batches = [_records(batch, start + (r * BATCHES + b) * batch) for b in range(BATCHES)]
        began, cpu_began = time.perf_counter(), time.process_time()
        for records in batches:
            await store.insert_records(records)
        seconds = time.perf_counter() - began
        rates.append(BATCHES * batch / seconds)
        cpu.append((time.process_time() - cpu_began) * 1e6 / (BATCHES * batch))
    return {
        "rows_per_s": round(statistics.median(rates), 1),
        "repeats_rows_per_s": [round(x) for x in rates],
        "cpu_us_per_row": round(statistics.median(cpu), 1),
    }


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    import psycopg

    from bullworker.history.store import open_store

    sizes = (0, 2_000, 5_000) if plan.smoke else (0, 1_000_000, 10_000_000)
    batch = 50 if plan.smoke else 500  # the recorder's default batch size
    repeats = 1 if plan.smoke else 3
    page_repeats = 5 if plan.smoke else 20
    levels: dict[str, Any] = {}
    async with (
        own_schema("hist") as schema,
        own_prefix("hist") as prefix,
        await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn,
    ):
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # made below
        await _make_table(conn, schema)
        have, written = 0, 0
        for size in sizes:
            log(f"  filling to {size:,} rows")
            filled = await _fill(conn, schema, have, size)
            have = size
            async with open_store(DATABASE_URL, pg_schema=schema) as store:
                inserts = await _inserts(store, batch, repeats, 10**9 + written)
            written += repeats * BATCHES * batch
            pages = await measure_pages(schema, prefix, page_repeats, warm_ups=2)
            table = f'"{schema}"."_jobs"'
            rows = (await (await conn.execute(COUNT_SQL.format(schema=schema))).fetchone())[0]
            sized = await (await conn.execute(PARTITION_SIZES_SQL, (table,))).fetchone()
            total_bytes = int(sized[0])
            levels[str(size)] = {
                **filled,
                "rows": rows,
                "bytes": total_bytes,
                "bytes_per_row": round(total_bytes / rows) if rows else None,
                "insert": inserts,
                "pages": pages,
                "worst_p95_ms": max(v["p95_ms"] for v in pages.values()),
            }
            log(
                f"  {size:,} rows (filled in {filled['fill_s']} s, indexed in {filled['index_s']} s):"
                f" insert {inserts['rows_per_s']:,.0f} rows/s, {inserts['cpu_us_per_row']} us CPU/row;"
                f" list pages worst p95 {levels[str(size)]['worst_p95_ms']} ms"
            )
    return {"batch_size": batch, "batches": BATCHES, "repeats": repeats, "levels": levels}


def render(data: dict[str, Any]) -> list[str]:
    """Markdown lines of the ``history`` section (none when it did not run)."""
    history = data.get("sections", {}).get("history")
    if not history or "levels" not in history:
        return []
    levels = history["levels"]
    sizes = list(levels)
    out = [
        "### Partitioned `_jobs` as it grows (bench/history_bench.py)",
        "",
        f"Store insert: batches of {history['batch_size']} rows (the recorder's), median of"
        f" {history['repeats']} repeats of {history['batches']} batches. Dashboard `/jobs`: p50 / p95 (ms).",
        "",
        "| | " + " | ".join(f"{int(s):,} rows" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
        "| store insert, rows/s | "
        + " | ".join(f"{levels[s]['insert']['rows_per_s']:,.0f}" for s in sizes)
        + " |",
        "| store insert, CPU µs/row | "
        + " | ".join(str(levels[s]["insert"]["cpu_us_per_row"]) for s in sizes)
        + " |",
        "| bytes per row with indexes | "
        + " | ".join(str(levels[s]["bytes_per_row"] or "") for s in sizes)
        + " |",
    ]
    for page in levels[sizes[-1]]["pages"]:
        cells = []
        for s in sizes:
            v = levels[s]["pages"].get(page)
            cells.append(f"{v['p50_ms']} / {v['p95_ms']}" if v else "")
        out.append(f"| `/jobs` {page} | " + " | ".join(cells) + " |")
    out.append("")
    return out
