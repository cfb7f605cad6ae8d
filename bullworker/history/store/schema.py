"""Every SQL statement of the job store, for PostgreSQL and SQLite, in one place.

The table name is the constant ``_jobs``. On PostgreSQL an optional schema name
is validated by `SCHEMA_NAME_RE` and quoted with `psycopg.sql.Identifier`; every
value is a query parameter. Dynamic parts are only chosen among the constant
fragments below (`where_clause`).
"""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql

from bullworker.core.errors import ConfigError

TABLE = "_jobs"

#: Key of the transaction-level advisory lock serialising concurrent DDL on PostgreSQL.
DDL_LOCK_KEY = 0x6275_6C6C_6A6F_6273  # "bulljobs"

#: Allowed PostgreSQL schema names (plain identifiers, at most 63 bytes).
SCHEMA_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: Indexes besides the primary key: (name, columns).
INDEXES: tuple[tuple[str, str], ...] = (
    ("_jobs_completedAt_idx", '"completedAt"'),
    ("_jobs_queue_completedAt_idx", '"queue", "completedAt"'),
    ("_jobs_status_completedAt_idx", '"status", "completedAt"'),
    ("_jobs_name_completedAt_idx", '"name", "completedAt"'),
    ("_jobs_retryOf_idx", '"retryOf"'),
    ("_jobs_parent_idx", '"parent"'),
)

#: Columns written by an insert, in parameter order.
INSERT_COLUMNS = (
    '"id", "queue", "queueId", "attempt", "name", "data", "traceId", "status", "result", '
    '"createdAt", "shouldExecuteAt", "executedAt", "completedAt", "retryOf", "progress", "logs", '
    '"parent"'
)
#: Columns read back, in the order `JobRecord` rows are built from.
SELECT_COLUMNS = (
    '"queue", "queueId", "attempt", "name", "data", "status", "result", "createdAt", '
    '"shouldExecuteAt", "executedAt", "completedAt", "traceId", "recordedAt", "retryOf", '
    '"progress", "logs", "parent"'
)

#: Columns added after ``_jobs`` was first released: (name, PostgreSQL type, SQLite type).
#: Tables created earlier get them through ``ALTER TABLE ... ADD COLUMN`` when a store opens.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("retryOf", "varchar(255) NULL", "TEXT NULL"),
    ("progress", "jsonb NULL", "TEXT NULL"),
    ("logs", "jsonb NULL", "TEXT NULL"),
    ("parent", "varchar(255) NULL", "TEXT NULL"),
)


#: The check of ``"status"`` (every `STATUSES`), as the CREATE TABLEs below spell it. Tables
#: created before ``cancelled`` existed allow only completed and failed; a store that opens one
#: replaces its check (PostgreSQL: `PG_STATUS_CHECK_CURRENT`; SQLite: `SQLITE_REBUILD`).
STATUS_CHECK = """CHECK ("status" IN ('completed', 'failed', 'cancelled'))"""
#: The newest status the check must allow, as it appears in the table's definition.
NEWEST_STATUS = "'cancelled'"
#: Name PostgreSQL gives the check of the column ``status`` of ``_jobs``.
PG_STATUS_CHECK_NAME = "_jobs_status_check"


def where_clause(
    placeholder: str,
    *,
    queue: Any = None,
    name: Any = None,
    status: Any = None,
    since: Any = None,
    until: Any = None,
) -> tuple[str, list[Any]]:
    """``WHERE ...`` text (or ``""``) and its parameters for the given non-None filters.

    `placeholder` is ``%s`` (psycopg) or ``?`` (sqlite3); datetimes must already
    be converted to the dialect's representation.
    """
    fragments = (
        ('"queue" = ', queue),
        ('"name" = ', name),
        ('"status" = ', status),
        ('"completedAt" >= ', since),
        ('"completedAt" < ', until),
    )
    used = [(text, value) for text, value in fragments if value is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(text + placeholder for text, _ in used), [v for _, v in used]


# --------------------------------------------------------------------------- PostgreSQL

PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    "id" varchar(255) NOT NULL,
    "queue" varchar(255) NOT NULL,
    "queueId" varchar(255) NOT NULL,
    "attempt" integer NOT NULL,
    "name" varchar(255) NOT NULL,
    "data" jsonb NULL,
    "traceId" char(32) NULL,
    "status" varchar(20) NOT NULL CHECK ("status" IN ('completed', 'failed', 'cancelled')),
    "result" jsonb NULL,
    "createdAt" timestamp(3) NOT NULL,
    "shouldExecuteAt" timestamp(3) NOT NULL,
    "executedAt" timestamp(3) NULL,
    "completedAt" timestamp(3) NOT NULL,
    "recordedAt" timestamp(3) NOT NULL DEFAULT (now() at time zone 'utc'),
    "retryOf" varchar(255) NULL,
    "progress" jsonb NULL,
    "logs" jsonb NULL,
    "parent" varchar(255) NULL,
    PRIMARY KEY ("id", "createdAt", "attempt")
)"""

PG_DDL_LOCK = "SELECT pg_advisory_xact_lock(%s)"
PG_SCHEMA_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)"
#: Number of the table and its indexes present (fast path: skip DDL when complete).
PG_OBJECTS_PRESENT = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = ANY(%s)"""
PG_OBJECT_NAMES = [TABLE, *(name for name, _ in INDEXES)]
#: Number of the `ADDED_COLUMNS` present in ``_jobs`` (fast path as above).
PG_COLUMNS_PRESENT = """
SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = %s
AND a.attname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped"""
PG_ADDED_COLUMN_NAMES = [name for name, _, _ in ADDED_COLUMNS]
#: 1 when the status check of ``_jobs`` allows `NEWEST_STATUS` (fast path as above).
PG_STATUS_CHECK_CURRENT = """
SELECT count(*) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = %s
AND k.conname = %s AND position(%s in pg_get_constraintdef(k.oid)) > 0"""

#: Insert of one row. A batch goes through `sql_partitions.PG_INSERT_STAGED`, the same
#: statement fed by a staging table; one that holds a key twice is sent row by row with
#: executemany() in pipeline mode, in one transaction (`pg_write`).
#: A row of the same key is left alone, except that the same job (same
#: ``completedAt`` too: never another job's row) read again later gets its new
#: progress and log lines; never fewer lines, so that a recorder which read the
#: job earlier cannot undo what a later one wrote.
PG_INSERT = (
    "INSERT INTO {table} AS old (" + INSERT_COLUMNS + ") VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    'ON CONFLICT ("id", "createdAt", "attempt") DO UPDATE '
    'SET "progress" = EXCLUDED."progress", "logs" = EXCLUDED."logs" '
    'WHERE old."completedAt" = EXCLUDED."completedAt" '
    'AND (old."progress", old."logs") IS DISTINCT FROM (EXCLUDED."progress", EXCLUDED."logs") '
    "AND jsonb_array_length(coalesce(EXCLUDED.\"logs\", '[]')) "
    ">= jsonb_array_length(coalesce(old.\"logs\", '[]'))"
)
#: `where_clause` output goes into ``{where}``.
PG_RECENT = (
    "SELECT " + SELECT_COLUMNS + ' FROM {table} {where} ORDER BY "completedAt" DESC, "id" DESC '
    "LIMIT %s"
)
PG_COUNT = "SELECT count(*) FROM {table} {where}"
PG_GET = (
    "SELECT " + SELECT_COLUMNS + ' FROM {table} WHERE "id" = %s '
    'ORDER BY "createdAt" DESC, "attempt" DESC'
)
#: Rows of the retries of one failed job (``bullworker retry``), newest first.
PG_RETRIES = (
    "SELECT " + SELECT_COLUMNS + ' FROM {table} WHERE "retryOf" = %s '
    'ORDER BY "createdAt" DESC, "attempt" DESC'
)
#: Rows of the children of one parent in a flow (``jobs show``), oldest first.
PG_CHILDREN = (
    "SELECT " + SELECT_COLUMNS + ' FROM {table} WHERE "parent" = %s '
    'ORDER BY "createdAt", "id", "attempt"'
)
#: One prune batch (a short transaction of its own); ``= ANY(ARRAY(...))`` gives a TID scan.
#: The condition is there twice: a ``ctid`` is unique only within one table, and on a
#: partitioned ``_jobs`` (`sql_partitions`) another partition can hold the same one.
PG_PRUNE = (
    'DELETE FROM {table} WHERE "completedAt" < %s {status} AND ctid = ANY(ARRAY('
    'SELECT ctid FROM {table} WHERE "completedAt" < %s {status} LIMIT %s))'
)
PG_PRUNE_STATUS = 'AND "status" = %s'
#: `JobStore.delete_record`: one row, by its key and what only its writer knows.
PG_DELETE_RECORD = (
    'DELETE FROM {table} WHERE "id" = %s AND "createdAt" = %s AND "attempt" = %s '
    'AND "completedAt" = %s AND "status" = %s'
)
PG_PING = "SELECT 1"


def pg_table(schema: str | None) -> sql.Identifier:
    """``"_jobs"`` or ``"<schema>"."_jobs"``; `schema` must match `SCHEMA_NAME_RE`."""
    if schema is None:
        return sql.Identifier(TABLE)
    if not SCHEMA_NAME_RE.fullmatch(schema):
        raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
    return sql.Identifier(schema, TABLE)


def pg_create_schema(schema: str) -> sql.Composed:
    """``CREATE SCHEMA IF NOT EXISTS "<schema>"``."""
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def pg_ddl(table: sql.Identifier) -> list[sql.Composed]:
    """CREATE TABLE, ADD COLUMN and CREATE INDEX statements, all ``IF NOT EXISTS``."""
    statements = [sql.SQL(PG_CREATE_TABLE).format(table=table)]
    for column, pg_type, _ in ADDED_COLUMNS:
        statements.append(
            sql.SQL("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} " + pg_type).format(
                table=table, column=sql.Identifier(column)
            )
        )
    for index, columns in INDEXES:
        statements.append(
            sql.SQL("CREATE INDEX IF NOT EXISTS {index} ON {table} (" + columns + ")").format(
                index=sql.Identifier(index), table=table
            )
        )
    return statements


def pg_status_check(table: sql.Identifier) -> list[sql.Composed]:
    """Replace an older status check by `STATUS_CHECK`: ``NOT VALID``, so no scan of the rows
    (they all passed the older, narrower check) under the table lock."""
    name = sql.Identifier(PG_STATUS_CHECK_NAME)
    return [
        sql.SQL("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}").format(
            table=table, name=name
        ),
        sql.SQL("ALTER TABLE {table} ADD CONSTRAINT {name} " + STATUS_CHECK + " NOT VALID").format(
            table=table, name=name
        ),
    ]


def pg_statement(template: str, table: sql.Identifier, **parts: str) -> sql.Composed:
    """Fill ``{table}`` (quoted identifier) and constant SQL `parts` into `template`."""
    fills: dict[str, sql.Composable] = {key: sql.SQL(value) for key, value in parts.items()}
    return sql.SQL(template).format(table=table, **fills)


# --------------------------------------------------------------------------- SQLite

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=OFF")

SQLITE_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS "_jobs" (
    "id" TEXT NOT NULL,
    "queue" TEXT NOT NULL,
    "queueId" TEXT NOT NULL,
    "attempt" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "data" TEXT NULL,
    "traceId" TEXT NULL,
    "status" TEXT NOT NULL CHECK ("status" IN ('completed', 'failed', 'cancelled')),
    "result" TEXT NULL,
    "createdAt" TEXT NOT NULL,
    "shouldExecuteAt" TEXT NOT NULL,
    "executedAt" TEXT NULL,
    "completedAt" TEXT NOT NULL,
    "recordedAt" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    "retryOf" TEXT NULL,
    "progress" TEXT NULL,
    "logs" TEXT NULL,
    "parent" TEXT NULL,
    PRIMARY KEY ("id", "createdAt", "attempt")
)"""

SQLITE_DDL = [SQLITE_CREATE_TABLE] + [
    f'CREATE INDEX IF NOT EXISTS "{index}" ON "_jobs" ({columns})' for index, columns in INDEXES
]

#: Names of the columns of ``_jobs`` (SQLite has no ``ADD COLUMN IF NOT EXISTS``).
SQLITE_COLUMNS = """SELECT "name" FROM pragma_table_info('_jobs')"""
#: Adds one of `ADDED_COLUMNS`: ``{column}`` and ``{type}`` come from that constant.
SQLITE_ADD_COLUMN = 'ALTER TABLE "_jobs" ADD COLUMN "{column}" {type}'
#: The CREATE TABLE statement of ``_jobs`` (to tell whether its status check is current).
SQLITE_TABLE_SQL = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '_jobs'"
#: SQLite cannot alter a check: a table with an older status check is copied into a new one
#: (in the transaction that adds the missing columns first), then its indexes made again.
SQLITE_REBUILD = [
    SQLITE_CREATE_TABLE.replace('IF NOT EXISTS "_jobs"', '"_jobs_rebuild"', 1),
    f'INSERT INTO "_jobs_rebuild" ({INSERT_COLUMNS}, "recordedAt") '
    f'SELECT {INSERT_COLUMNS}, "recordedAt" FROM "_jobs"',
    'DROP TABLE "_jobs"',
    'ALTER TABLE "_jobs_rebuild" RENAME TO "_jobs"',
    *SQLITE_DDL[1:],
]
#: Whether ``_jobs`` exists, without creating it.
SQLITE_TABLE_EXISTS = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_jobs'"

#: `PG_INSERT`'s upsert, with the same rule.
SQLITE_INSERT = (
    'INSERT INTO "_jobs" ('
    + INSERT_COLUMNS
    + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    'ON CONFLICT ("id", "createdAt", "attempt") DO UPDATE '
    'SET "progress" = excluded."progress", "logs" = excluded."logs" '
    'WHERE "_jobs"."completedAt" = excluded."completedAt" '
    'AND ("_jobs"."progress" IS NOT excluded."progress" OR "_jobs"."logs" IS NOT excluded."logs") '
    "AND json_array_length(coalesce(excluded.\"logs\", '[]')) "
    '>= json_array_length(coalesce("_jobs"."logs", \'[]\'))'
)
#: `where_clause` output goes into ``{where}``.
SQLITE_RECENT = (
    "SELECT " + SELECT_COLUMNS + ' FROM "_jobs" {where} ORDER BY "completedAt" DESC, "id" DESC '
    "LIMIT ?"
)
SQLITE_COUNT = 'SELECT count(*) FROM "_jobs" {where}'
SQLITE_GET = (
    "SELECT " + SELECT_COLUMNS + ' FROM "_jobs" WHERE "id" = ? '
    'ORDER BY "createdAt" DESC, "attempt" DESC'
)
SQLITE_RETRIES = (
    "SELECT " + SELECT_COLUMNS + ' FROM "_jobs" WHERE "retryOf" = ? '
    'ORDER BY "createdAt" DESC, "attempt" DESC'
)
SQLITE_CHILDREN = (
    "SELECT " + SELECT_COLUMNS + ' FROM "_jobs" WHERE "parent" = ? '
    'ORDER BY "createdAt", "id", "attempt"'
)
SQLITE_PRUNE = (
    'DELETE FROM "_jobs" WHERE rowid IN ('
    'SELECT rowid FROM "_jobs" WHERE "completedAt" < ? {status} LIMIT ?)'
)
SQLITE_PRUNE_STATUS = 'AND "status" = ?'
SQLITE_DELETE_RECORD = (
    'DELETE FROM "_jobs" WHERE "id" = ? AND "createdAt" = ? AND "attempt" = ? '
    'AND "completedAt" = ? AND "status" = ?'
)
SQLITE_PING = "SELECT 1"
