"""Running an app from the command line: loading it, signals, queueing one job."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import traceback
from typing import Any

from bullworker.app import App
from bullworker.core.errors import AppLoadError as AppLoadError
from bullworker.core.errors import BullworkerError

log = logging.getLogger("bullworker.serve")

#: Exit status of a process stopped by a second signal.
FORCED_EXIT = 130


def load_app(spec: str | None) -> App:
    """Import ``module[:attribute]`` (attribute default ``app``); a factory is called."""
    spec = spec or os.environ.get("BULLWORKER_APP")
    if not spec:
        raise AppLoadError("no app given: pass --app module[:attribute] or set BULLWORKER_APP")
    module_name, _, attribute = spec.partition(":")
    attribute = attribute or "app"
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"cannot import {module_name!r}: module not found") from None
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from None
    except BullworkerError as exc:
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:  # the app's own code raised: say what and where, in one line
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {text} ({_where(exc)})"
        ) from None
    try:
        target: Any = getattr(module, attribute)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(target, App) and callable(target):
        target = target()
    if not isinstance(target, App):
        raise AppLoadError(f"{spec} is a {type(target).__name__}, not a bullworker App")
    return target


def _where(exc: Exception) -> str:
    """``file:line`` where ``exc`` was raised (of the bad line, for a SyntaxError)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "unknown place"


async def run_worker(
    app: App,
    *,
    queues: list[str] | None = None,
    concurrency: int | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the app's runner until SIGTERM or SIGINT; a second signal exits at once.

    ``metrics_port`` serves ``/metrics``, ``/healthz`` and ``/readyz`` on that port.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(FORCED_EXIT)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    runner = app.create_runner(queues=queues, concurrency=concurrency)
    if metrics_port is not None:
        from bullworker.observe.metrics import install_metrics

        install_metrics(runner, port=metrics_port)
    try:
        await runner.start()
        app.runner = runner
        await stop.wait()
    finally:
        await app.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)


async def run_supervisor(
    app: App,
    app_spec: str | None,
    processes: int,
    args: list[str],
    *,
    metrics_port: int | None = None,
) -> int:
    """Run ``processes`` worker processes of the app until a signal; return the exit status.

    With ``metrics_port`` P, worker process i serves its metrics on port P + i.
    """
    from bullworker.runtime.supervisor import Supervisor, child_command

    spec = app_spec or os.environ.get("BULLWORKER_APP")
    supervisor = Supervisor(
        child_command(spec, args),
        processes,
        grace=app.config.shutdown_grace,
        metrics_port=metrics_port,
    )
    return await supervisor.run()


async def queue_by_name(
    app: App,
    name: str,
    data: Any,
    *,
    queue: str | None = None,
    force: bool = False,
    delay: int | None = None,
) -> str:
    """Queue one job by name and close the producer's connections."""
    try:
        return await app.worker_service.queue_job_by_name(
            name, data, queue=queue, force=force, delay=delay
        )
    finally:
        await app.worker_service.close()


def exit_if_jobs_are_stuck() -> None:
    """End the process if a sync handler's thread outlived the shutdown.

    Such a thread cannot be stopped, and the interpreter would wait for it
    at exit; its job comes back through the stalled path on another runner.
    """
    import threading
    import time

    # Idle pool threads end right after the pool shuts down; give them a moment.
    deadline = time.monotonic() + 1.0
    stuck = [t for t in threading.enumerate() if t.name.startswith("bullworker-job")]
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        log.warning(
            "%d job thread(s) still running after shutdown: exiting without them", len(stuck)
        )
        logging.shutdown()
        os._exit(0)


def setup_logging(level: str = "INFO", *, trace_ids: bool | None = None) -> None:
    """Plain, one-line log records on stderr, with the trace id when tracing is possible.

    ``trace_ids`` (default: whether opentelemetry is importable, as for
    ``create_app(tracing=)``) adds ``[trace=<trace id>]`` (``-`` outside a span)
    after the level, so a job's log lines name the trace of its run.
    """
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if trace_ids is None:
        from bullworker.core.trace import tracing_available

        trace_ids = tracing_available()
    if trace_ids:
        from bullworker.observe.tracing import TraceIdFilter

        handler.addFilter(TraceIdFilter())
        fmt = "%(asctime)s %(levelname)s [trace=%(trace_id)s] %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])
