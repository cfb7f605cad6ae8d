"""The commands that run and queue jobs: ``start``, ``queue``, ``schedules``."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from bullworker.cli.app import AppOption, JsonOption, cli, fail, format_table, load

if TYPE_CHECKING:
    from bullworker.ops.schedules import ScheduleInfo


@cli.command()
def start(
    app: AppOption = None,
    queues: Annotated[
        str | None,
        typer.Option(help="Comma-separated queues to consume (default: all of the app's)."),
    ] = None,
    record_queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to record in _jobs without consuming them "
            "(e.g. queues only Node processes); replaces RECORD_QUEUES.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once per queue.")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes to run under a supervisor.")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="BULLWORKER_METRICS_PORT",
            help="Serve /metrics, /healthz and /readyz on this port (process i of --processes: port + i).",
        ),
    ] = None,
) -> None:
    """Run the job runner until SIGTERM or SIGINT."""
    from bullworker.core.errors import BullworkerError
    from bullworker.ops.serve import (
        exit_if_jobs_are_stuck,
        run_supervisor,
        run_worker,
        setup_logging,
    )

    setup_logging(log_level)
    if metrics_port is not None:
        from bullworker.observe.metrics import MetricsError, require_prometheus

        try:
            require_prometheus()
        except MetricsError as exc:
            fail(str(exc), 2)
    application = load(app)
    if not application.enable_worker:
        fail("this app was created without enable_worker=True, so it cannot run jobs", 2)
    chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    if record_queues is not None:
        from bullworker.config.settings import queue_names
        from bullworker.core.errors import ConfigError

        try:
            queue_names(record_queues, "--record-queues")
        except ConfigError as exc:
            fail(str(exc), 2)
        application.config.record_queues = record_queues
    if processes > 1:
        child_args = ["--log-level", log_level]
        if queues:
            child_args += ["--queues", queues]
        if record_queues is not None:
            child_args += ["--record-queues", record_queues]
        if concurrency:
            child_args += ["--concurrency", str(concurrency)]
        supervise = run_supervisor(
            application, app, processes, child_args, metrics_port=metrics_port
        )
        raise typer.Exit(asyncio.run(supervise))
    try:
        asyncio.run(
            run_worker(
                application, queues=chosen, concurrency=concurrency, metrics_port=metrics_port
            )
        )
    except BullworkerError as exc:
        fail(str(exc))
    exit_if_jobs_are_stuck()


@cli.command()
def queue(
    name: Annotated[str, typer.Argument(help="Job name (the job class's name).")],
    app: AppOption = None,
    data: Annotated[str, typer.Option(help="Payload as JSON.")] = "{}",
    delay: Annotated[int | None, typer.Option(min=0, help="Delay in milliseconds.")] = None,
    queue_name: Annotated[
        str | None, typer.Option("--queue", help="Queue to use (default: the job's queue).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Queue a name this app does not register (for a Node consumer).")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds to wait for Redis (default REDIS_TIMEOUT)."),
    ] = None,
) -> None:
    """Queue one job and print its id."""
    from bullworker.core.errors import BullworkerError
    from bullworker.ops.serve import queue_by_name

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"--data is not valid JSON: {exc}", 2)
    application = load(app)
    if timeout is not None:
        application.config.redis_timeout = timeout
    try:
        job_id = asyncio.run(
            queue_by_name(application, name, payload, queue=queue_name, force=force, delay=delay)
        )
    except BullworkerError as exc:
        hint = (
            " (use --force to queue it for a consumer elsewhere)"
            if "unknown job" in str(exc)
            else ""
        )
        fail(f"{exc}{hint}")
    if application.config.is_test:
        typer.echo("APP_ENV=test: the job was not queued", err=True)
    typer.echo(job_id)


@cli.command()
def schedules(
    app: AppOption = None,
    as_json: JsonOption = False,
    count: Annotated[int, typer.Option("--next", min=1, max=50, help="Next runs shown.")] = 3,
) -> None:
    """List the cron schedules: next runs, whether Redis has them, last run."""
    from bullworker.core.errors import BullworkerError
    from bullworker.ops.schedules import describe_schedules

    application = load(app)
    try:
        infos = asyncio.run(describe_schedules(application, count=count))
    except BullworkerError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps([info.to_json() for info in infos], indent=2))
    else:
        typer.echo(_schedule_table(infos))


def _schedule_table(infos: list[ScheduleInfo]) -> str:
    """One line per schedule, times in the schedule's timezone."""
    if not infos:
        return "no cron schedules in this app"
    rows = []
    for info in infos:
        if info.installed is None:
            redis_state = "?"
        elif not info.installed:
            redis_state = "no"
        else:
            redis_state = _short(info.installed_next)
            if not info.in_sync:
                redis_state += " (outdated)"
        if info.last_run_error is not None:
            last = "?"
        else:
            last = f"{_short(info.last_run)} {info.last_run_status}" if info.last_run else "never"
        nexts = ", ".join(_short(t) for t in info.next_fires)
        rows.append((info.job, info.queue, info.pattern, info.timezone, nexts, redis_state, last))
    headers = ("JOB", "QUEUE", "PATTERN", "TZ", "NEXT RUNS", "IN REDIS", "LAST RUN")
    return format_table(headers, rows)


def _short(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
