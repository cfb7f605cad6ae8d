"""``bullworker jobs partition``: the ``_jobs`` table's migration to daily partitions.

It loads the app, calls `bullworker.ops.partition.partition_jobs_table` and prints
what it did. Importing this module registers the command under ``bullworker jobs``.
"""

from __future__ import annotations

from typing import Any

import typer

from bullworker.cli.app import AppOption, JsonOption, echo_json, load, run
from bullworker.cli.ops import jobs_cli


@jobs_cli.command("partition")
def jobs_partition(app: AppOption = None, as_json: JsonOption = False) -> None:
    """Migrate _jobs (PostgreSQL) to a table partitioned by day, keeping every row.

    One transaction: reads and writes of _jobs wait until it ends. Running it again, or
    on a table created partitioned, does nothing.
    """
    from bullworker.ops.inspect import app_store
    from bullworker.ops.partition import partition_jobs_table

    application = load(app)

    async def work() -> Any:
        async with app_store(application.config) as store:
            return await partition_jobs_table(store)

    result = run(work())
    if as_json:
        echo_json(result.to_dict())
    elif result.already:
        typer.echo("_jobs is partitioned already: nothing to do")
    else:
        typer.echo(
            f"_jobs partitioned: {result.rows} row(s) copied into {result.partitions} day "
            f"partition(s) and the default one in {result.seconds:.1f} s"
        )
