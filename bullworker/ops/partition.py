"""``bullworker jobs partition``: migrate an unpartitioned ``_jobs`` to daily partitions.

A store makes ``_jobs`` partitioned when it creates it on PostgreSQL; a table an
earlier version made stays as it was, and works as before, until this migration
(`bullworker.history.store.partitions.migrate`) copies its rows into a partitioned
one, in one transaction. SQLite has no partitions.
"""

from __future__ import annotations

from bullworker.core.errors import OpsError
from bullworker.history.store import JobStore, PostgresJobStore
from bullworker.history.store.partitions import MigrationResult


async def partition_jobs_table(store: JobStore) -> MigrationResult:
    """Migrate the (opened) store's ``_jobs`` to a partitioned table; nothing to do, and
    ``already`` set, when it is partitioned already. OpsError on SQLite."""
    if not isinstance(store, PostgresJobStore):
        raise OpsError(
            f"{store.describe()}: _jobs is partitioned on PostgreSQL only; "
            "SQLite keeps one table (see docs/sizing.md)"
        )
    return await store.partition_table()
