"""The commands that run and queue jobs: ``start``, ``queue``, ``schedules``."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bullworker.cli.app import AppOption, JsonOption, cli, echo_json, fail, format_table, load
from bullworker.cli.completion import complete_job_names, complete_queue, complete_queue_list
from bullworker.core.errors import EXIT_FAILED
from bullworker.runtime.loop import run as run_on_loop

if TYPE_CHECKING:
    from bullworker.ops.schedules import ScheduleInfo


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@cli.command()
def start(
    app: AppOption = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to consume (default: all of the app's).",
            autocompletion=complete_queue_list,
        ),
    ] = None,
    record_queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to record in _jobs without consuming them "
            "(e.g. queues only Node processes); replaces RECORD_QUEUES.",
            autocompletion=complete_queue_list,
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs run at once per queue.")
    ] = None,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes to run under a supervisor.")
    ] = 1,
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            case_sensitive=False,
            envvar="LOG_LEVEL",
            show_envvar=True,
            help="Log this level and above (default: the app's LOG_LEVEL, else INFO).",
        ),
    ] = None,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            case_sensitive=False,
            envvar="LOG_FORMAT",
            show_envvar=True,
            help="Log lines as plain text or one JSON object each (default: text).",
        ),
    ] = None,
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
    from bullworker.ops.serve import (
        apply_app_logging,
        exit_if_jobs_are_stuck,
        run_supervisor,
        run_worker,
        setup_logging,
    )

    level = log_level.value if log_level else None
    fmt = log_format.value if log_format else None
    setup_logging(level or "INFO", fmt or "text")
    if metrics_port is not None:
        from bullworker.observe.metrics import require_prometheus

        require_prometheus()
    application = load(app)
    apply_app_logging(application, level, fmt)
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
    if chosen and "BULLWORKER_PROCESS_SLOT" not in os.environ:  # not again in each child
        _warn_unknown_queues(application, chosen, "starting anyway")
    if processes > 1:
        child_args = ["--log-level", level] if level else []
        if fmt:
            child_args += ["--log-format", fmt]
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
    run_on_loop(
        run_worker(application, queues=chosen, concurrency=concurrency, metrics_port=metrics_port),
        application.config.event_loop,
    )
    exit_if_jobs_are_stuck()


def _warn_unknown_queues(application: Any, names: list[str], doing: str) -> None:
    """One ``warning:`` line for the queues no job of the app uses and Redis does not know."""
    from bullworker.ops.inspect import app_queues, unknown_queues

    unknown = asyncio.run(unknown_queues(application, names))
    if unknown:
        typer.echo(
            f"warning: no job of this app uses queue {', '.join(unknown)} and Redis has no "
            f"keys for it (this app's queues: {', '.join(app_queues(application))}); {doing}, "
            "as Node processes may use it",
            err=True,
        )


@cli.command()
def queue(
    name: Annotated[
        str,
        typer.Argument(help="Job name (the job class's name).", autocompletion=complete_job_names),
    ],
    app: AppOption = None,
    data: Annotated[str, typer.Option(help="Payload as JSON.")] = "{}",
    delay: Annotated[int | None, typer.Option(min=0, help="Delay in milliseconds.")] = None,
    queue_name: Annotated[
        str | None,
        typer.Option(
            "--queue",
            help="Queue to use (default: the job's queue).",
            autocompletion=complete_queue,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Queue a name this app does not register (for a Node consumer).")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for the job to end; print its result as JSON (exit 1 if it failed).",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="Seconds to wait for Redis (default REDIS_TIMEOUT); "
            "with --wait, for the job to end (default: no limit).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Queue one job and print <queue>:<id>, which `jobs show` and `retry --id` take.

    With --wait, print the job's result instead once it has ended (its failed
    reason goes to stderr, with exit status 1).
    """
    from bullworker.core.errors import UnknownJobError
    from bullworker.ops.serve import queue_by_name

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(f"--data is not valid JSON: {exc}", 2)
    application = load(app)
    if timeout is not None and not wait:
        application.config.redis_timeout = timeout
    known = force or application.registry.find(name) is not None
    if queue_name and known and not application.config.is_test:
        _warn_unknown_queues(application, [queue_name], "queueing anyway")
    try:
        queued = asyncio.run(
            queue_by_name(
                application,
                name,
                payload,
                queue=queue_name,
                force=force,
                delay=delay,
                wait=wait,
                wait_timeout=timeout,
            )
        )
    except UnknownJobError as exc:
        fail(f"{exc} (use --force to queue it for a consumer elsewhere)", exc.exit_code)
    except TimeoutError as exc:
        fail(str(exc), EXIT_FAILED)
    if application.config.is_test:
        typer.echo("APP_ENV=test: the job was not queued", err=True)
    finished = queued.finished
    if finished is not None:
        if as_json:
            echo_json(queued.to_dict())
        elif finished.status == "completed":
            typer.echo(json.dumps(finished.value))
        if finished.status != "completed":
            if not as_json:
                typer.echo(f"{queued.ref} {finished.status}: {finished.reason}", err=True)
            raise typer.Exit(EXIT_FAILED)
        return
    if as_json:
        echo_json(queued.to_dict())
    else:
        typer.echo(queued.ref)


@cli.command()
def schedules(
    app: AppOption = None,
    as_json: JsonOption = False,
    count: Annotated[int, typer.Option("--next", min=1, max=50, help="Next runs shown.")] = 3,
) -> None:
    """List the cron schedules: next runs, whether Redis has them, last run."""
    from bullworker.ops.schedules import describe_schedules

    application = load(app)
    infos = asyncio.run(describe_schedules(application, count=count))
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
