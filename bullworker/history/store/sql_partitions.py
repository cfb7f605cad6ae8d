"""SQL of the partitioned ``_jobs`` on PostgreSQL, and of its batched insert.

Same rules as `schema`: identifiers are quoted with `psycopg.sql`, values are
query parameters, except partition bounds, which DDL cannot take as parameters:
those are dates this module formats itself (`day_literal`).

Why RANGE partitions on ``"createdAt"``, one a day (see `partitions` for the rest):

- the primary key ``("id", "createdAt", "attempt")`` already holds it, so it stays
  the key the recorder's upsert conflicts on: a job attempt still has one row
  everywhere (a key with ``"completedAt"`` added would let a second row in for
  the same attempt with another finish time, which `batch.own_rows` refuses), and
  the row a job's later log lines update is found by the same key as before;
- a job's ``"createdAt"`` never changes, so a row never moves between partitions;
- a day is the unit of ``JOBS_RETENTION`` in practice (``30d``, ``7d``), and
  keeps the partitions few (a list query looks at each one's index).
"""

from __future__ import annotations

from datetime import date, timedelta

from psycopg import sql

from bullworker.history.store.schema import INSERT_COLUMNS, PG_CREATE_TABLE, PG_INSERT, TABLE

#: The partition column (see the module's docstring).
PARTITION_COLUMN = "createdAt"
#: Name of the partition of the day ``d``: ``_jobs_p20261205``.
PARTITION_PREFIX = f"{TABLE}_p"
PARTITION_DATE = "%Y%m%d"
#: The partition of rows no day's partition takes (days before the table, or dropped).
DEFAULT_PARTITION = f"{TABLE}_default"
#: The name of the primary key of the partitioned table (a new one: the old keeps its own).
PRIMARY_KEY = f"{TABLE}_pkey"
#: How long partition DDL waits for the table's lock before it gives up (and tries later):
#: inserts queue up behind a waiting ``ACCESS EXCLUSIVE`` request.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"

#: The partitioned table: `PG_CREATE_TABLE` with its key and check named as on an
#: unpartitioned table (the store's checks look them up by name).
PG_CREATE_PARTITIONED = (
    PG_CREATE_TABLE.replace(
        '"status" varchar(20) NOT NULL CHECK',
        '"status" varchar(20) NOT NULL CONSTRAINT "_jobs_status_check" CHECK',
    ).replace("    PRIMARY KEY", f'    CONSTRAINT "{PRIMARY_KEY}" PRIMARY KEY')
    + f' PARTITION BY RANGE ("{PARTITION_COLUMN}")'
)

#: ``relkind`` of ``_jobs``: ``p`` partitioned, ``r`` a plain table, no row if missing.
PG_RELKIND = """
SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = %s"""
#: Names of the partitions of ``_jobs``.
PG_PARTITION_NAMES = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
WHERE n.nspname = coalesce(%s, current_schema()) AND p.relname = %s"""

#: Whether a partition has a row finished before / at or after a moment (its
#: ``"completedAt"`` index answers); ``{status}`` is "" or `schema.PG_PRUNE_STATUS`.
PG_ANY_BEFORE = 'SELECT EXISTS (SELECT 1 FROM {table} WHERE "completedAt" < %s {status})'
PG_ANY_FROM = 'SELECT EXISTS (SELECT 1 FROM {table} WHERE "completedAt" >= %s)'
PG_COUNT_ALL = "SELECT count(*) FROM {table}"
PG_LOCK_EXCLUSIVE = "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
PG_DROP = "DROP TABLE {table}"
#: Rows of one day in the default partition (they must move before that day gets its own).
PG_DEFAULT_HAS_DAY = (
    'SELECT EXISTS (SELECT 1 FROM {table} WHERE "createdAt" >= %s AND "createdAt" < %s)'
)
PG_CREATE_DETACHED = "CREATE TABLE {part} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
PG_MOVE_DAY = (
    'WITH moved AS (DELETE FROM {default} WHERE "createdAt" >= %s AND "createdAt" < %s '
    "RETURNING " + INSERT_COLUMNS + ', "recordedAt") '
    "INSERT INTO {part} (" + INSERT_COLUMNS + ', "recordedAt") '
    "SELECT " + INSERT_COLUMNS + ', "recordedAt" FROM moved'
)

# --------------------------------------------------------------------------- migration

#: The name an unpartitioned ``_jobs`` has while its rows are copied into the new one.
OLD_TABLE = f"{TABLE}_unpartitioned"
PG_LOCK_FOR_MIGRATION = "LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
PG_RENAME_TABLE = "ALTER TABLE {table} RENAME TO {name}"
PG_RENAME_CONSTRAINT = "ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}"
PG_DROP_INDEX = "DROP INDEX IF EXISTS {index}"
PG_FIRST_DAY = 'SELECT min("createdAt")::date FROM {table}'
PG_COPY_ALL = (
    "INSERT INTO {new} (" + INSERT_COLUMNS + ', "recordedAt") '
    "SELECT " + INSERT_COLUMNS + ', "recordedAt" FROM {old}'
)
PG_ANALYZE = "ANALYZE {table}"

# --------------------------------------------------------------------------- batched insert

#: The per-connection staging table a batch is copied into (emptied at each commit).
STAGE = f"{TABLE}_stage"
PG_CREATE_STAGE = (
    'CREATE TEMP TABLE IF NOT EXISTS "' + STAGE + '" ON COMMIT DELETE ROWS AS '
    "SELECT " + INSERT_COLUMNS + " FROM {table} WITH NO DATA"
)
PG_COPY_STAGE = 'COPY "' + STAGE + '" (' + INSERT_COLUMNS + ") FROM STDIN"
#: `schema.PG_INSERT`'s upsert, from the staging table, in key order (two recorders
#: writing overlapping batches lock rows in the same order: no deadlock).
PG_INSERT_STAGED = PG_INSERT.replace(
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "SELECT " + INSERT_COLUMNS + ' FROM "' + STAGE + '" ORDER BY "id", "createdAt", "attempt"',
)
#: How the binary ``COPY`` sends `schema.INSERT_COLUMNS`: a jsonb field goes as bytes
#: made ready (`pg_write`: version 1, then the text), which skips psycopg's jsonb dumper.
INSERT_TYPES = (
    "varchar", "varchar", "varchar", "int4", "varchar", "bytea", "text", "varchar", "bytea",
    "timestamp", "timestamp", "timestamp", "timestamp", "varchar", "bytea", "bytea", "varchar",
)  # fmt: skip


def day_literal(day: date) -> sql.Literal:
    """A partition bound: the start of ``day`` (``'2026-12-05'``), a naive UTC timestamp."""
    return sql.Literal(day.isoformat())


def partition_name(day: date) -> str:
    """``_jobs_p20261205``."""
    return PARTITION_PREFIX + day.strftime(PARTITION_DATE)


def ident(schema: str | None, name: str) -> sql.Identifier:
    """``"<name>"`` or ``"<schema>"."<name>"`` (the schema was validated by `schema.pg_table`)."""
    return sql.Identifier(name) if schema is None else sql.Identifier(schema, name)


def pg_create_partition(table: sql.Identifier, part: sql.Identifier, day: date) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` the partition of ``day`` (``[day, day + 1)``)."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {part} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"
    ).format(part=part, table=table, lo=day_literal(day), hi=day_literal(_next(day)))


def pg_attach_partition(table: sql.Identifier, part: sql.Identifier, day: date) -> sql.Composed:
    """``ATTACH PARTITION`` ``part`` as the partition of ``day``."""
    return sql.SQL(
        "ALTER TABLE {table} ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})"
    ).format(table=table, part=part, lo=day_literal(day), hi=day_literal(_next(day)))


def pg_create_default(table: sql.Identifier, default: sql.Identifier) -> sql.Composed:
    """``CREATE TABLE IF NOT EXISTS`` the default partition."""
    return sql.SQL("CREATE TABLE IF NOT EXISTS {default} PARTITION OF {table} DEFAULT").format(
        default=default, table=table
    )


def pg(template: str, **parts: sql.Composable) -> sql.Composed:
    """``template`` with its ``{names}`` filled (identifiers or constant SQL)."""
    return sql.SQL(template).format(**parts)


def _next(day: date) -> date:
    return day + timedelta(days=1)
