"""Shell completion of the app's queue and job names (``bullworker --install-completion``).

The shell asks the command itself: with ``_BULLWORKER_COMPLETE`` set, ``bullworker``
prints the candidates for the word being completed and exits. For a queue or
job name it loads the app (``--app`` on the command line so far, else
``BULLWORKER_APP``) without printing or logging anything, and offers no
candidates when the app cannot be loaded.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import typer

__all__ = ["complete_job_names", "complete_queue", "complete_queue_list"]


def _app(ctx: typer.Context) -> Any:
    """The app of the command being completed, or None; silent whatever happens."""
    from bullworker.ops.serve import load_app

    spec = None
    context: Any = ctx
    while context is not None and spec is None:  # ``jobs show`` has --app on its group
        spec = context.params.get("app")
        context = context.parent
    quiet = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return load_app(spec)
    except (Exception, SystemExit):  # whatever importing the app does: no candidates
        return None
    finally:
        logging.disable(previous)


def _queues(ctx: typer.Context) -> list[str]:
    app = _app(ctx)
    if app is None:
        return []
    from bullworker.ops.inspect import app_queues

    try:
        return app_queues(app)
    except Exception:
        return []


def complete_queue(ctx: typer.Context, incomplete: str) -> list[str]:
    """The app's queues that start with what was typed."""
    return [queue for queue in _queues(ctx) if queue.startswith(incomplete)]


def complete_queue_list(ctx: typer.Context, incomplete: str) -> list[str]:
    """The last name of a comma-separated list: ``default,ot`` -> ``default,other``."""
    done, comma, last = incomplete.rpartition(",")
    taken = set(done.split(",")) if comma else set()
    return [
        f"{done}{comma}{queue}"
        for queue in _queues(ctx)
        if queue.startswith(last) and queue not in taken
    ]


def complete_job_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The app's registered job names that start with what was typed."""
    app = _app(ctx)
    if app is None:
        return []
    try:
        return [name for name in app.registry.names() if name.startswith(incomplete)]
    except Exception:
        return []
