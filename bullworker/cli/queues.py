"""``bullworker queues``: list the queues; pause, resume, promote, remove, clean, drain, obliterate.

The commands parse arguments, call `bullworker.ops.queues`, `.purge` and
`.queue_jobs`, and print one line (or a table) for people, JSON with ``--json``.
Importing this module registers them on the ``bullworker`` command.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bullworker.cli.app import AppOption, JsonOption, cli, echo_json, fail, format_table, load, run
from bullworker.cli.completion import complete_queue

queues_cli = typer.Typer(
    help="BullMQ's queues: counts, pause and resume, removing jobs.", no_args_is_help=False
)
cli.add_typer(queues_cli, name="queues")

QueueName = Annotated[
    str, typer.Argument(metavar="NAME", help="The queue.", autocompletion=complete_queue)
]
JobId = Annotated[
    str, typer.Argument(metavar="ID", help="<queue>:<jobId>, or <jobId> of BULL_QUEUE.")
]
#: Columns of `bullworker queues`, and the BullMQ state each counts.
_COLUMNS = (
    ("WAITING", "waiting"), ("PRIORITIZED", "prioritized"), ("ACTIVE", "active"),
    ("DELAYED", "delayed"), ("WAITING-CHILDREN", "waiting-children"),
    ("COMPLETED", "completed"), ("FAILED", "failed"),
)  # fmt: skip


def _print(outcome: Any, as_json: bool) -> None:
    if as_json:
        echo_json(outcome.to_dict())
    else:
        typer.echo(outcome.describe())


@queues_cli.callback(invoke_without_command=True)
def queues(ctx: typer.Context, app: AppOption = None, as_json: JsonOption = False) -> None:
    """The queues of the app and any other in Redis: jobs per state, and whether each is paused.

    COMPLETED and FAILED are the finished jobs in Redis: not recorded in _jobs yet, or
    recorded and kept there for the keep window (KEEP_COMPLETED, KEEP_FAILED, KEEP_AGE).
    """
    if ctx.invoked_subcommand is not None:
        return
    from bullworker.ops.queues import list_queues

    found = run(list_queues(load(app)))
    if as_json:
        echo_json([info.to_dict() for info in found])
        return
    headers = ("QUEUE", "PAUSED", *(title for title, _ in _COLUMNS))
    rows = [
        (info.queue, "yes" if info.paused else "no", *(info.counts[s] for _, s in _COLUMNS))
        for info in found
    ]
    typer.echo(format_table(headers, rows))


@queues_cli.command("pause")
def queues_pause(name: QueueName, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Pause a queue: no worker, bullworker's or Node's, starts its jobs until it is resumed.

    Running jobs go on, and new jobs can still be queued: they wait. It is BullMQ's own pause.
    """
    from bullworker.ops.queues import set_paused

    _print(run(set_paused(load(app), name, True)), as_json)


@queues_cli.command("resume")
def queues_resume(name: QueueName, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused queue: running workers start its waiting jobs at once."""
    from bullworker.ops.queues import set_paused

    _print(run(set_paused(load(app), name, False)), as_json)


@queues_cli.command("promote")
def queues_promote(job_id: JobId, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Start a delayed job now: it moves to waiting."""
    from bullworker.ops.queue_jobs import promote_job

    _print(run(promote_job(load(app), job_id)), as_json)


@queues_cli.command("remove")
def queues_remove(job_id: JobId, app: AppOption = None, as_json: JsonOption = False) -> None:
    """Remove one job from Redis: a job that has not started, or a finished one.

    A waiting or delayed job is removed without running (no _jobs row). A finished job of a
    recorded queue is recorded in _jobs first. A running job is refused: `jobs cancel` stops it.
    """
    from bullworker.ops.queue_jobs import remove_job

    _print(run(remove_job(load(app), job_id)), as_json)


@queues_cli.command("clean")
def queues_clean(
    name: QueueName,
    state: Annotated[
        str, typer.Option("--state", help="completed, failed, delayed or wait (with prioritized).")
    ],
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Finished (completed, failed) or created longer ago, e.g. 1h."
        ),
    ],
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many jobs (default: all).")
    ] = None,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the jobs of one state older than --older-than, as BullMQ's clean.

    Finished jobs of a recorded queue are recorded in _jobs first; waiting and delayed ones are
    removed without running. The next runs of job schedulers (cron) stay.
    """
    from bullworker.core.durations import DurationError, parse_duration
    from bullworker.ops.purge import CLEAN_STATES, clean_queue

    if state not in (*CLEAN_STATES, "waiting"):
        fail(f"--state must be one of {', '.join(CLEAN_STATES)}, got {state!r}", 2)
    try:
        age = parse_duration(older_than)
    except DurationError as exc:
        fail(f"--older-than: {exc}", 2)
    application = load(app)
    outcome = run(clean_queue(application, name, state=state, older_than=age, limit=limit))
    _print(outcome, as_json)


@queues_cli.command("drain")
def queues_drain(
    name: QueueName,
    delayed: Annotated[
        bool, typer.Option("--delayed", help="Remove the delayed jobs too.")
    ] = False,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the waiting (and prioritized) jobs of a queue, without running them.

    None of them gets a _jobs row. Running and finished jobs stay, and so do the next runs of
    job schedulers (cron).
    """
    from bullworker.ops.purge import drain_queue

    _print(run(drain_queue(load(app), name, delayed=delayed)), as_json)


@queues_cli.command("obliterate")
def queues_obliterate(
    name: QueueName,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also while jobs run (they are lost, and not recorded)."),
    ] = False,
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a queue from Redis for good: all its jobs, job schedulers and state.

    Asks first (--yes does not). Refused while jobs of it run, unless --force. Finished jobs of a
    recorded queue are recorded in _jobs first.
    """
    from bullworker.ops.purge import obliterate_queue, running_error
    from bullworker.ops.queues import queue_info

    application = load(app)
    info = run(queue_info(application, name))
    if info.counts["active"] and not force:
        raise running_error(name, info.counts["active"])
    if not yes:
        jobs = ", ".join(f"{n} {state}" for state, n in info.counts.items() if n) or "no jobs"
        typer.confirm(
            f"Obliterate queue {name} ({jobs}): delete it from Redis for good?",
            abort=True,
            err=True,
        )
    _print(run(obliterate_queue(application, name, force=force)), as_json)
