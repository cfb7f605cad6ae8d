"""Item 15: the dashboard's job list over 1,000,000 ``_jobs`` rows on PostgreSQL.

The rows go into a schema of their own in one ``INSERT ... SELECT`` from
``generate_series`` (about a month of jobs, 8 queues, 20 names, 2% failed with
three kinds of reasons, some cancelled), into a bare ``_jobs``; then a bullworker
store opens it, which creates the indexes of `schema.INDEXES` in place, as it does
for a table of an older version. The list page is then asked for through the
dashboard's ASGI app in this process (httpx's ASGITransport: templates, the Redis
part of the list, and the SQL, but no socket), one request after the other: the
unfiltered list and filtered ones, each at its first page and at a deep page (the
keyset cursor of the row half way down the table, as ``older →`` gives it after
thousands of pages). p50/p95 over `Plan` repeats of each page.
"""

from __future__ import annotations

import statistics
import time
from typing import Any
from urllib.parse import urlencode

from bench.common import DATABASE_URL, REDIS_URL, Plan, own_prefix, own_schema

#: Synthetic `_jobs` rows ``g`` finished at ``t``, from the subquery ``{times}`` (columns g, t);
#: the history section uses them too.
ROWS_SQL = """
INSERT INTO "{schema}"."_jobs" ("id", "queue", "queueId", "attempt", "name", "data", "status",
    "result", "createdAt", "shouldExecuteAt", "executedAt", "completedAt")
SELECT 'q' || (g %% 8) || ':' || g, 'q' || (g %% 8), g::text, 1, 'Job' || (g %% 20),
    jsonb_build_object('n', g, 'email', 'user' || g || '@example.com'),
    CASE WHEN g %% 50 = 0 THEN 'failed' WHEN g %% 997 = 0 THEN 'cancelled' ELSE 'completed' END,
    CASE WHEN g %% 50 = 0 THEN jsonb_build_object(
            'reason', CASE WHEN g %% 150 = 0 THEN 'TimeoutError: upstream took longer than 30 s'
                           WHEN g %% 100 = 0 THEN 'ValueError: width must be positive'
                           ELSE 'ConnectionError: SMTP server refused ' || (g %% 7) END,
            'stack', jsonb_build_array('Traceback (most recent call last): ...'))
         WHEN g %% 997 = 0 THEN jsonb_build_object('reason', 'JobCancelled: by user', 'stack',
            '[]'::jsonb)
         ELSE jsonb_build_object('ok', true, 'n', g) END,
    t - interval '50 ms', t - interval '50 ms', t - interval '40 ms', t
FROM ({times}) AS s
"""
#: 2.5 s apart, the newest now.
INSERT_SQL = ROWS_SQL.replace(
    "{times}",
    "SELECT g, (now() at time zone 'utc') - g * interval '2.5 s' AS t "
    "FROM generate_series(1, %s) AS g",
)
#: The row half way down, newest first: its cursor is the deep page.
MIDDLE_SQL = """
SELECT "completedAt", "id" FROM "{schema}"."_jobs" {where}
ORDER BY "completedAt" DESC, "id" DESC
OFFSET (SELECT count(*) / 2 FROM "{schema}"."_jobs" {where}) LIMIT 1
"""

#: (case, query string of /jobs, WHERE of its deep page's cursor, is filtered)
CASES = (
    ("all states", {}, "", False),
    ("completed", {"state": "completed"}, """WHERE "status" = 'completed'""", False),
    ("failed in one queue", {"queue": "q4", "state": "failed"},
     """WHERE "queue" = 'q4' AND "status" = 'failed'""", True),
    ("failed, one name", {"name": "Job10", "state": "failed"},
     """WHERE "name" = 'Job10' AND "status" = 'failed'""", True),
    ("reason contains text", {"state": "failed", "text": "upstream took"},
     """WHERE "status" = 'failed' AND "result"->>'reason' ILIKE '%upstream took%'""", True),
    ("one queue, last day", {"queue": "q2", "since": "1d"}, None, True),
)  # fmt: skip


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


async def _fill(schema: str, rows: int) -> dict[str, float]:
    import psycopg

    from bullworker.history.store import open_store
    from bullworker.history.store import schema as q

    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(q.pg_ddl(q.pg_table(schema))[0])  # the table only, no index yet
        began = time.perf_counter()
        await conn.execute(INSERT_SQL.format(schema=schema), (rows,))  # type: ignore[arg-type]
        inserted = time.perf_counter() - began
        began = time.perf_counter()
        async with open_store(DATABASE_URL, pg_schema=schema):  # creates the indexes in place
            pass
        indexed = time.perf_counter() - began
        await conn.execute(f'VACUUM ANALYZE "{schema}"."_jobs"')  # as autovacuum would
    return {"insert_s": round(inserted, 1), "indexes_s": round(indexed, 1)}


async def _cursor(schema: str, where: str) -> str | None:
    import psycopg

    sql = MIDDLE_SQL.format(schema=schema, where=where).replace("%", "%%")
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        row = await (await conn.execute(sql)).fetchone()  # type: ignore[arg-type]
    if row is None:
        return None
    completed_at, job_id = row
    from datetime import UTC

    return f"{round(completed_at.replace(tzinfo=UTC).timestamp() * 1000)}~{job_id}"


async def measure_pages(
    schema: str, prefix: str, repeats: int, log: Any = None, warm_ups: int = 3
) -> dict[str, dict[str, Any]]:
    """p50/p95 of each `CASES` page of ``/jobs`` over ``_jobs`` in ``schema``, through the
    dashboard's ASGI app in this process; ``log`` says each page's figures."""
    import httpx

    from bullworker import AppConfig, create_app
    from bullworker.dashboard import dashboard_app

    config = AppConfig(
        environ={}, redis_url=REDIS_URL, bull_prefix=prefix, database_url=DATABASE_URL,
        database_schema=schema, app_env="production",
    )  # fmt: skip
    app = create_app(config=config)
    web = dashboard_app(app)
    transport = httpx.ASGITransport(app=web, client=("127.0.0.1", 40000))
    pages: dict[str, dict[str, Any]] = {}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, params, where, filtered in CASES:
                wanted = [("first page", params)]
                if where is not None and (cursor := await _cursor(schema, where)):
                    wanted.append(("deep page", {**params, "cursor": cursor}))
                for depth, query in wanted:
                    url = "/jobs?" + urlencode({**query, "limit": 50})
                    for _ in range(warm_ups):  # the pool, the plan cache, the queue list
                        answer = await client.get(url)
                        assert answer.status_code == 200, answer.text[:500]
                    samples = []
                    for _ in range(repeats):
                        began = time.perf_counter()
                        answer = await client.get(url)
                        samples.append(time.perf_counter() - began)
                        assert answer.status_code == 200
                    figures = {**_percentiles(samples), "filtered": filtered, "url": url}
                    pages[f"{name}, {depth}"] = figures
                    if log is not None:
                        log(
                            f"  {name}, {depth}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms"
                        )
    finally:
        await web.state.dashboard.close()
        await app.stop()
    return pages


async def run(plan: Plan, log: Any) -> dict[str, Any]:
    rows = 5_000 if plan.smoke else 1_000_000
    repeats = 10 if plan.smoke else 60
    async with own_schema("dash") as schema, own_prefix("dash") as prefix:
        log(f"  inserting {rows:,} rows")
        filled = await _fill(schema, rows)
        log(f"  {filled['insert_s']} s to insert, {filled['indexes_s']} s to index")
        pages = await measure_pages(schema, prefix, repeats, log)
    unfiltered = [v["p95_ms"] for v in pages.values() if not v["filtered"]]
    filtered_p95 = [v["p95_ms"] for v in pages.values() if v["filtered"]]
    return {
        "rows": rows,
        **filled,
        "repeats": repeats,
        "pages": pages,
        "worst_p95_unfiltered_ms": max(unfiltered),
        "worst_p95_filtered_ms": max(filtered_p95),
    }
