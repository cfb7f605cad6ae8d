"""Operations commands: ``stats``, ``jobs`` (``show``, ``cancel``), ``retry``, ``prune``, ``doctor``.

They parse arguments, call `bullworker.ops` / `bullworker.doctor`, and print a
plain table (or JSON with ``--json``). Importing this module registers them on
the ``bullworker`` command.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer

from bullworker.cli.app import AppOption, JsonOption, cli, echo_json, fail, format_table, load, run
from bullworker.cli.completion import complete_job_names, complete_queue
from bullworker.core.status import STATUSES

T = TypeVar("T")

QueueFilter = Annotated[
    str | None, typer.Option("--queue", help="Only this queue.", autocompletion=complete_queue)
]
NameFilter = Annotated[
    str | None,
    typer.Option("--name", help="Only jobs of this name.", autocompletion=complete_job_names),
]
SinceFilter = Annotated[
    str | None,
    typer.Option(
        "--since", help="Finished at or after: a duration ago (30m, 1h, 2d) or an ISO datetime."
    ),
]

jobs_cli = typer.Typer(help="Recorded jobs (the _jobs table).", no_args_is_help=False)
cli.add_typer(jobs_cli, name="jobs")


def _since(text: str | None) -> datetime | None:
    from bullworker.core.durations import DurationError, parse_since

    if text is None:
        return None
    try:
        return parse_since(text)
    except DurationError as exc:
        fail(f"--since: {exc}", 2)


def _seconds(ms: int | None) -> str | None:
    return None if ms is None else f"{ms / 1000:.3f}s"


@cli.command()
def stats(app: AppOption = None, as_json: JsonOption = False) -> None:
    """Jobs per queue in Redis, the recorder leader, the recording lag and the lost jobs.

    COMPLETED and FAILED count the finished jobs in Redis (recorded ones stay for the keep
    window), UNRECORDED those not in _jobs yet, LOST those that left Redis unrecorded.
    """
    from bullworker.ops.inspect import queue_stats

    application = load(app)
    found = run(queue_stats(application))
    if as_json:
        echo_json([s.to_dict() for s in found])
        return
    headers = ("QUEUE", "PAUSED", "WAITING", "ACTIVE", "DELAYED", "FAILED", "COMPLETED",
               "UNRECORDED", "LAG", "LOST", "LEADER")  # fmt: skip
    rows = [
        (s.queue, "yes" if s.paused else "no", s.waiting, s.active, s.delayed, s.failed,
         s.completed, s.unrecorded, f"{s.lag:.1f}s", s.lost.total if s.lost else 0,
         s.leader.describe() if s.leader else "none")
        for s in found
    ]  # fmt: skip
    typer.echo(format_table(headers, rows))
    for lost in (s.lost for s in found if s.lost and s.lost.total):
        typer.echo(
            f"queue {lost.queue}: {lost.total} finished job(s) left Redis before they were "
            f"recorded (last: job {lost.last_job}, {lost.last_status}); their producer sets "
            "removeOnComplete/removeOnFail: leave it unset on recorded queues",
            err=True,
        )


@jobs_cli.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    app: AppOption = None,
    queue: QueueFilter = None,
    name: NameFilter = None,
    status: Annotated[
        str | None, typer.Option("--status", help="completed, failed or cancelled.")
    ] = None,
    since: SinceFilter = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recent recorded jobs, newest first; `jobs show ID` for one of them."""
    if ctx.invoked_subcommand is not None:
        return
    from bullworker.ops.inspect import app_store, job_detail, job_summary, list_jobs

    when = _since(since)
    application = load(app)

    async def work() -> list[Any]:
        async with app_store(application.config) as store:
            return await list_jobs(
                store, queue=queue, name=name, status=status, since=when, limit=limit
            )

    rows = run(work())
    if as_json:
        echo_json([job_detail(r) for r in rows])
        return
    if not rows:
        typer.echo("no recorded jobs match", err=True)
        if not application.config.record_jobs:
            typer.echo(
                "RECORD_JOBS is false, so nothing is recorded: `bullworker stats` counts the "
                "jobs in Redis, `jobs show` and `retry` read them there",
                err=True,
            )
        return
    headers = ("ID", "NAME", "STATUS", "ATTEMPT", "FINISHED", "DURATION", "REASON")
    table = []
    for summary in (job_summary(r) for r in rows):
        keys = ("id", "name", "status", "attempt", "finished")
        table.append(
            [*(summary[k] for k in keys), _seconds(summary["duration_ms"]), summary["reason"]]
        )
    typer.echo(format_table(headers, table))


@jobs_cli.command("show")
def jobs_show(
    job_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="<queue>:<jobId> as `queue` prints it, or <jobId> of BULL_QUEUE."
        ),
    ],
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """One job id: the job in Redis if it is there, then every recorded run.

    Each with its data, result or error, timings, progress and last log lines; then its
    family in a flow: its parent and its children, each with its state.
    """
    from bullworker.ops.inspect import app_store
    from bullworker.ops.live import show_job

    application = load(app)

    async def work() -> list[dict[str, Any]]:
        async with app_store(application.config) as store:
            return await show_job(application.config, store, job_id)

    details = run(work())
    if as_json:
        echo_json(details)
        return
    for number, detail in enumerate(details):
        if number:
            typer.echo("")
        _print_detail(detail)
    _print_family(details[0])


@jobs_cli.command("cancel")
def jobs_cancel(
    job_id: Annotated[
        str, typer.Argument(metavar="ID", help="<queue>:<jobId>, or <jobId> of BULL_QUEUE.")
    ],
    app: AppOption = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why; the job's reason is 'JobCancelled: <reason>'.")
    ] = "cancelled by user",
    wait: Annotated[
        float,
        typer.Option("--wait", min=0, help="Seconds to wait for a running job to stop; 0: don't."),
    ] = 5.0,
    as_json: JsonOption = False,
) -> None:
    """Cancel a job: remove it if it has not started, else stop it wherever it runs.

    A waiting, prioritized or delayed job is recorded in _jobs as cancelled, then removed from
    Redis. A running job gets a cancel request that reaches its runner in any process or host:
    it fails with JobCancelled, without retries, and is recorded as cancelled. Exits with 1
    when a running job has not stopped cancelled within --wait.
    """
    from bullworker.ops.cancel import cancel_job
    from bullworker.ops.inspect import check_job_id

    application = load(app)
    queue, _, queue_id = check_job_id(job_id, application.config.bull_queue).partition(":")
    outcome = run(cancel_job(application.config, queue, queue_id, reason, wait=wait))
    if as_json:
        echo_json(outcome.to_dict())
    else:
        typer.echo(outcome.describe())
    if wait > 0 and not outcome.cancelled:
        raise typer.Exit(1)


def _print_detail(detail: dict[str, Any]) -> None:
    timings = detail["timings"]
    lines: list[tuple[str, Any]] = [
        ("id", detail["id"]),
        ("name", detail["name"]),
        ("status", detail["status"]),
        ("source", "redis (not recorded yet)" if detail["source"] == "redis" else "_jobs"),
        ("attempt", detail["attempt"]),
        ("created", timings["created"]),
        ("scheduled", timings["scheduled"]),
        ("started", timings["started"]),
        ("finished", timings["finished"]),
        ("duration", _seconds(timings["duration_ms"])),
        ("wait", _seconds(timings["wait_ms"])),
        ("trace id", detail["traceId"]),
        ("retry of", detail["retryOf"]),
        ("data", json.dumps(detail["data"], ensure_ascii=False)),
    ]
    if detail["progress"] is not None:  # only for jobs that report progress
        lines.append(("progress", json.dumps(detail["progress"], ensure_ascii=False)))
    if "error" in detail:
        finished = detail["status"] in STATUSES
        lines.append(("error" if finished else "last error", detail["error"]["reason"]))
    elif "result" in detail:
        lines.append(("result", json.dumps(detail["result"], ensure_ascii=False)))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        typer.echo(f"{label.ljust(width)}  {'-' if value is None else value}")
    if "error" in detail and detail["error"]["stack"]:
        typer.echo("stack:")
        for entry in detail["error"]["stack"]:
            for line in str(entry).splitlines():
                typer.echo(f"  {line}")
    if detail["logs"]:
        typer.echo("logs:")
        for entry in detail["logs"]:
            for line in str(entry).splitlines() or [""]:
                typer.echo(f"  {line}")


def _print_family(detail: dict[str, Any]) -> None:
    """A flow's parent and children of ``jobs show`` (nothing for a job in no flow)."""
    parent, children = detail.get("parent"), detail.get("children") or []
    if parent is None and not children:
        return
    typer.echo("")
    rows = [("parent", parent)] if parent else []
    rows += [("child", child) for child in children]
    table = [
        (role, m["id"], m["name"], m["status"] or "gone", m["source"], m.get("dependency"))
        for role, m in rows
    ]
    typer.echo(format_table(("FAMILY", "ID", "NAME", "STATUS", "SOURCE", "DEPENDENCY"), table))


@cli.command()
def retry(
    app: AppOption = None,
    job_id: Annotated[
        str | None,
        typer.Option("--id", help="One failed job: <queue>:<jobId>, or <jobId> of BULL_QUEUE."),
    ] = None,
    queue: QueueFilter = None,
    name: NameFilter = None,
    since: SinceFilter = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many jobs.")] = 100,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be retried; queue nothing.")
    ] = False,
    again: Annotated[
        bool, typer.Option("--again", help="Queue a further retry of jobs retried before.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Queue failed jobs again (same name, data and queue) once; prints the new job ids."""
    from bullworker.ops.inspect import app_queues, app_store
    from bullworker.ops.retry import retry_jobs, select_failed

    if job_id is not None and (queue or name or since):
        fail("--id cannot be combined with --queue, --name or --since", 2)
    when = _since(since)
    application = load(app)

    async def work() -> list[Any]:
        async with app_store(application.config) as store:
            records = await select_failed(
                store, application.config, job_id=job_id, queue=queue, name=name,
                since=when, limit=limit, queues=app_queues(application),
            )  # fmt: skip
            return await retry_jobs(application, store, records, dry_run=dry_run, again=again)

    done = run(work())
    if as_json:
        echo_json([r.to_dict() for r in done])
    elif not done:
        typer.echo("no failed jobs match", err=True)
    else:
        headers = ("ID", "NAME", "FAILED", "REASON", "WOULD RETRY" if dry_run else "NEW ID")
        rows = [
            (d["id"], d["name"], d["failed"], d["reason"], _retry_outcome(d, dry_run))
            for d in (r.to_dict() for r in done)
        ]
        typer.echo(format_table(headers, rows))
    if any(r.error for r in done):
        raise typer.Exit(1)


def _retry_outcome(entry: dict[str, Any], dry_run: bool) -> str:
    if entry["retriedAs"]:
        return f"retried before as {entry['retriedAs']}"
    if entry["error"]:
        return f"error: {entry['error']}"
    return "yes" if dry_run else str(entry["newId"])


@cli.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete rows finished longer ago, e.g. 30d.")
    ],
    app: AppOption = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only completed, only failed or only cancelled rows."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Rows deleted per statement.")
    ] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows; delete nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete old rows of the _jobs table, in short batches."""
    from bullworker.core.durations import DurationError, parse_duration
    from bullworker.ops.inspect import app_store, prune_jobs

    try:
        age = parse_duration(older_than)
    except DurationError as exc:
        fail(f"--older-than: {exc}", 2)
    application = load(app)

    async def work() -> Any:
        async with app_store(application.config) as store:
            return await prune_jobs(
                store, older_than=age, status=status, batch_size=batch_size, dry_run=dry_run
            )

    result = run(work())
    if as_json:
        echo_json(result.to_dict())
        return
    which = f"{result.status} " if result.status else ""
    verb = "would delete" if result.dry_run else "deleted"
    cutoff = result.to_dict()["cutoff"]
    typer.echo(f"{verb} {result.rows} {which}row(s) finished before {cutoff}")


@cli.command()
def doctor(app: AppOption = None, as_json: JsonOption = False) -> None:
    """Check Redis, the database, the jobs and the recorders; exit 1 on any FAIL."""
    from bullworker.ops.doctor import failed, run_doctor

    application = load(app)
    checks = run(run_doctor(application))
    if as_json:
        echo_json({"ok": not failed(checks), "checks": [c.to_dict() for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            typer.echo(f"{check.level:<4}  {check.name.ljust(width)}  {check.message}")
            if check.fix and check.level != "OK":
                typer.echo(f"{'':<4}  {''.ljust(width)}  fix: {check.fix}")
        warnings = sum(c.level == "WARN" for c in checks)
        failures = sum(c.level == "FAIL" for c in checks)
        typer.echo(f"{len(checks)} checks: {failures} failed, {warnings} warning(s)")
    if failed(checks):
        raise typer.Exit(1)
