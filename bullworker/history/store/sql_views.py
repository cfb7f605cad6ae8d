"""SQL of the dashboard's views of ``_jobs`` (`views`), for PostgreSQL and SQLite.

Same rules as `schema`: constant fragments, every value a query parameter.
"""

from __future__ import annotations

from typing import Any

from bullworker.history.store.schema import where_clause

# --------------------------------------------------------------------------- dashboard views
# `views`: job lists without payloads (keyset pages), completions per time bucket, failures grouped.

#: The failed reason of a failed or cancelled row (None for a completed one), per dialect.
PG_REASON = """CASE WHEN "status" <> 'completed' THEN "result"->>'reason' END"""
SQLITE_REASON = """CASE WHEN "status" <> 'completed' THEN json_extract("result", '$.reason') END"""
#: Columns of a listed row (`views.JobSummary`), in order; ``{reason}`` is the dialect's.
SUMMARY_COLUMNS = (
    '"queue", "queueId", "attempt", "name", "status", {reason}, "createdAt", "executedAt", '
    '"completedAt", "retryOf", "parent"'
)


def list_where(
    placeholder: str,
    reason: str,
    *,
    text: str | None = None,
    before: tuple[Any, str] | None = None,
    failures: bool = False,
    **filters: Any,
) -> tuple[str, list[Any]]:
    """`where_clause` of ``filters``, plus: a case-insensitive ``text`` in the failed reason; the
    keyset bound ``before`` (``completedAt``, ``id`` of the previous page's last row); with
    ``failures`` (implied by ``text``), only the rows that have a reason."""
    where, params = where_clause(placeholder, **filters)
    extra: list[str] = []
    if (text or failures) and filters.get("status") is None:  # an index finds them
        extra.append(""""status" IN ('failed', 'cancelled')""")
    if text:
        like = "ILIKE" if placeholder == "%s" else "LIKE"  # SQLite's LIKE ignores ASCII case
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        extra.append(f"({reason}) {like} {placeholder} ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if before is not None:  # the first bound is one an index on (..., "completedAt") seeks to
        extra.append(f'"completedAt" <= {placeholder}')
        extra.append(f'("completedAt", "id") < ({placeholder}, {placeholder})')
        params += [before[0], *before]
    joined = " AND ".join(extra)
    if not joined:
        return where, params
    return (f"{where} AND {joined}" if where else f"WHERE {joined}"), params


#: One page of a job list; `list_where` output goes into ``{where}``.
PG_LIST = (
    "SELECT " + SUMMARY_COLUMNS.format(reason=PG_REASON) + " FROM {table} {where} "
    'ORDER BY "completedAt" DESC, "id" DESC LIMIT %s'
)
SQLITE_LIST = (
    "SELECT " + SUMMARY_COLUMNS.format(reason=SQLITE_REASON) + ' FROM "_jobs" {where} '
    'ORDER BY "completedAt" DESC, "id" DESC LIMIT ?'
)
#: ``completedAt`` of the n-th newest matching row: the end of a text search's window.
PG_NTH = 'SELECT "completedAt" FROM {table} {where} ORDER BY "completedAt" DESC OFFSET %s LIMIT 1'
SQLITE_NTH = 'SELECT "completedAt" FROM "_jobs" {where} ORDER BY 1 DESC LIMIT 1 OFFSET ?'
#: Rows per queue, bucket (seconds since 1970 // bucket seconds) and status, since a moment.
PG_THROUGHPUT = (
    'SELECT "queue", floor(extract(epoch FROM "completedAt") / %s)::bigint, "status", count(*) '
    'FROM {table} WHERE "completedAt" >= %s GROUP BY 1, 2, 3'
)
SQLITE_THROUGHPUT = (
    """SELECT "queue", CAST(strftime('%s', "completedAt") AS INTEGER) / ?, "status", count(*) """
    'FROM "_jobs" WHERE "completedAt" >= ? GROUP BY 1, 2, 3'
)
#: Failures since a moment grouped by job name and reason: count, the latest, the queues.
PG_FAILURE_GROUPS = (
    'SELECT "name", "result"->>\'reason\', count(*), max("completedAt"), '
    "string_agg(DISTINCT \"queue\", ',') FROM {table} "
    'WHERE "status" = %s AND "completedAt" >= %s GROUP BY 1, 2 ORDER BY 3 DESC, 4 DESC LIMIT %s'
)
SQLITE_FAILURE_GROUPS = (
    'SELECT "name", json_extract("result", \'$.reason\'), count(*), max("completedAt"), '
    'group_concat(DISTINCT "queue") FROM "_jobs" '
    'WHERE "status" = ? AND "completedAt" >= ? GROUP BY 1, 2 ORDER BY 3 DESC, 4 DESC LIMIT ?'
)
