"""Running an app from the command line: loading it, signals, queueing one job."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from typing import Any

from bullworker.app import App
from bullworker.core.errors import AppLoadError as AppLoadError
from bullworker.core.errors import BullworkerError, ConfigError
from bullworker.producer.results import Finished
from bullworker.transport.probe import check_reachable

log = logging.getLogger("bullworker.serve")

#: Exit status of a process stopped by a second signal.
FORCED_EXIT = 130


def load_app(spec: str | None) -> App:
    """Import ``module[:attribute]`` (attribute default ``app``); a factory is called.

    AppLoadError says what failed and where, in one line (the cause is chained); a
    ConfigError raised by the app's settings stays a ConfigError.
    """
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
        if exc.name and (module_name == exc.name or module_name.startswith(f"{exc.name}.")):
            raise AppLoadError(
                f"cannot import {module_name!r}: module not found (looked in {os.getcwd()}, "
                "PYTHONPATH and site-packages); run bullworker from the project's directory "
                "or add it to PYTHONPATH"
            ) from exc
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc} ({_where(exc)}); "
            f"is it installed in this environment ({sys.prefix})?"
        ) from exc
    except ConfigError:
        raise
    except BullworkerError as exc:
        raise AppLoadError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the app's own code raised: say what and where, in one line
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise AppLoadError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {text} ({_where(exc)})"
        ) from exc
    try:
        target: Any = getattr(module, attribute)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(target, App) and callable(target):
        try:
            target = target()
        except ConfigError:
            raise
        except BullworkerError as exc:
            raise AppLoadError(f"the app factory {spec} raised: {exc}") from exc
        except Exception as exc:
            raise AppLoadError(
                f"the app factory {spec} raised {type(exc).__name__}: {exc} ({_where(exc)})"
            ) from exc
    if not isinstance(target, App):
        raise AppLoadError(f"{spec} is a {type(target).__name__}, not a bullworker App")
    return target


def _where(exc: Exception) -> str:
    """``file:line`` where ``exc`` was raised (of the bad line, for a SyntaxError): the
    innermost frame outside Python's and the installed packages' own files."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_short(exc.filename)}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    libraries = {sysconfig.get_path(name) for name in ("stdlib", "purelib", "platlib")}
    libraries.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bullworker
    for frame in reversed(frames):
        path = os.path.abspath(frame.filename)
        if not frame.filename.startswith("<") and not any(
            path.startswith(lib + os.sep) for lib in libraries if lib
        ):
            return f"{_short(frame.filename)}:{frame.lineno}"
    return f"{_short(frames[-1].filename)}:{frames[-1].lineno}"


def _short(path: str) -> str:
    """``path`` relative to the current directory when it is inside it."""
    relative = os.path.relpath(os.path.abspath(path), os.getcwd())
    return path if relative.startswith("..") else relative


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
        log.info(
            "%s received: shutting down (send it again to stop at once)",
            signal.Signals(signum).name,
        )
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

    await check_reachable(app.config.redis_settings("bull"))  # before any child, at once
    spec = app_spec or os.environ.get("BULLWORKER_APP")
    supervisor = Supervisor(
        child_command(spec, args),
        processes,
        grace=app.config.shutdown_grace,
        metrics_port=metrics_port,
    )
    return await supervisor.run()


@dataclass(frozen=True, slots=True)
class Queued:
    """A job queued by `queue_by_name`; ``ref`` (``<queue>:<id>``) is what ``jobs show``
    and ``retry --id`` take."""

    queue: str
    id: str
    name: str
    #: How it ended, when the caller waited for it.
    finished: Finished | None = None

    @property
    def ref(self) -> str:
        return f"{self.queue}:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"queue": self.queue, "id": self.id, "name": self.name}
        found["ref"] = self.ref
        if self.finished is not None:
            found["status"] = self.finished.status
            if self.finished.status == "completed":
                found["result"] = self.finished.value
            else:
                found["reason"] = self.finished.reason
        return found


async def queue_by_name(
    app: App,
    name: str,
    data: Any,
    *,
    queue: str | None = None,
    force: bool = False,
    delay: int | None = None,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> Queued:
    """Queue one job by name (``wait``: and wait for its end); close the producer's connections.

    Waiting longer than ``wait_timeout`` seconds raises ``TimeoutError``.
    """
    config = app.config
    definition = app.registry.find(name)
    if definition is None and not force:
        app.registry.get(name)  # UnknownJobError, before any connection
    target = queue or (definition.queue(config.bull_queue) if definition else config.bull_queue)
    try:
        if not config.is_test:  # APP_ENV=test queues nothing
            await check_reachable(config.redis_settings("bull"))
        handle = await app.worker_service.queue_job_by_name(
            name, data, queue=queue, force=force, delay=delay
        )
        finished = await handle.finished(wait_timeout) if wait else None
    finally:
        await app.worker_service.close()
    return Queued(queue=target, id=handle.id, name=name, finished=finished)


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


def setup_logging(
    level: str = "INFO", log_format: str = "text", *, trace_ids: bool | None = None
) -> None:
    """One line a log record on stderr, plain text or JSON, with the trace id when tracing
    is possible (see :func:`bullworker.observe.logs.configure_logging`)."""
    from bullworker.observe.logs import configure_logging

    configure_logging(level, log_format, trace_ids=trace_ids)


def apply_app_logging(app: App, level: str | None, log_format: str | None) -> None:
    """Once the app is loaded: its ``LOG_LEVEL``/``LOG_FORMAT`` where the command line gave
    none, unless importing it set up logging of its own."""
    from bullworker.observe.logs import default_logging

    default_logging(level or app.config.log_level, log_format or app.config.log_format)
