"""The log of a bullworker process: one line a record on stderr, as text or as JSON.

`configure_logging` is what ``bullworker start`` sets up (``--log-level`` or
``LOG_LEVEL``, ``--log-format`` or ``LOG_FORMAT``). `default_logging` sets up the
same for an app hosted in another program (an ASGI lifespan, ``async with app``)
when that program has configured no logging, so the runner's lines are seen; a
program that configured logging keeps it as it is.

A ``text`` line::

    2026-12-05 10:00:00,338 INFO [trace=-] bullworker.runner: runner started: ...

(``[trace=...]`` when opentelemetry is importable). A ``json`` line has ``time``
(UTC, ISO 8601), ``level``, ``logger`` and ``message``, then ``queue``,
``job_name``, ``job_id`` (of the job being run) and ``trace_id`` when there are
such, and ``exception`` with the traceback of a logged exception.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from bullworker.config.settings import LOG_FORMATS, LOG_LEVELS
from bullworker.core.errors import ConfigError
from bullworker.runtime.context import find_current_job

__all__ = [
    "JobFieldsFilter",
    "JsonFormatter",
    "configure_logging",
    "default_logging",
    "logging_configured",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TEXT_FORMAT_TRACE = "%(asctime)s %(levelname)s [trace=%(trace_id)s] %(name)s: %(message)s"
#: The job fields a JSON line carries when the record has them.
JOB_FIELDS = ("queue", "job_name", "job_id")


class DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler bullworker installs on the root logger (and replaces, never adds twice)."""


class JobFieldsFilter(logging.Filter):
    """Adds ``queue``, ``job_name`` and ``job_id`` of the job being run to its log records.

    Records logged while a job runs (by bullworker or by the job's handler, also
    from a sync handler's thread) get the fields of that job, unless they carry
    their own (``extra=``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        job = find_current_job()
        if job is not None:
            if not hasattr(record, "queue"):
                record.queue = job.queue
            if not hasattr(record, "job_name"):
                record.job_name = job.name
            if not hasattr(record, "job_id"):
                record.job_id = job.id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring for its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in (*JOB_FIELDS, "trace_id"):
            value = getattr(record, key, None)
            if value is not None and value != "-":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(
    level: str = "INFO", log_format: str = "text", *, trace_ids: bool | None = None
) -> None:
    """Log records of ``level`` and above to stderr, one line each, in ``log_format``.

    ``trace_ids`` (default: whether opentelemetry is importable, as for
    ``create_app(tracing=)``) adds the trace id of the current span: ``[trace=<id>]``
    (``-`` outside a span) after the level of a text line, ``trace_id`` in JSON.
    Calling it again replaces the handler it installed.
    """
    level, log_format = level.upper(), log_format.lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"log format {log_format!r} is neither text nor json")
    if trace_ids is None:
        from bullworker.core.trace import tracing_available

        trace_ids = tracing_available()
    handler = DefaultHandler(sys.stderr)
    handler.addFilter(JobFieldsFilter())
    if trace_ids:
        from bullworker.observe.tracing import TraceIdFilter

        handler.addFilter(TraceIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT_TRACE if trace_ids else TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, DefaultHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def logging_configured() -> bool:
    """Whether the program set up logging itself: a handler of its own on the root or
    ``bullworker`` logger (the one `configure_logging` installs does not count)."""
    handlers = [*logging.getLogger().handlers, *logging.getLogger("bullworker").handlers]
    return any(not isinstance(handler, DefaultHandler) for handler in handlers)


def default_logging(
    level: str = "INFO", log_format: str = "text", *, trace_ids: bool | None = None
) -> bool:
    """`configure_logging` unless the program configured logging; whether it did."""
    if logging_configured():
        return False
    configure_logging(level, log_format, trace_ids=trace_ids)
    return True
