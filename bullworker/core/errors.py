"""Every exception bullworker defines; all derive from `BullworkerError` (docs/errors.md).

The classes keep a builtin base where callers may catch that one instead
(``except ValueError`` still catches a `PayloadError`). Each class's ``exit_code``
is the status the ``bullworker`` command exits with when that error ends it.
"""

from __future__ import annotations

#: Exit statuses of the ``bullworker`` command (docs/errors.md, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1  # a job or an operation failed
EXIT_USAGE = 2  # a bad option, argument or --app
EXIT_UNREACHABLE = 3  # Redis or the database refused the connection or did not answer
EXIT_CONFIG = 4  # bad settings, TLS files, installation


class BullworkerError(Exception):
    """Base class of every error bullworker raises on purpose."""

    #: The ``bullworker`` command's exit status when this error ends it.
    exit_code: int = EXIT_FAILED


class ConfigError(BullworkerError, ValueError):
    """The configuration is invalid (the message never contains secrets)."""

    exit_code = EXIT_CONFIG


class JobDefinitionError(BullworkerError):
    """A job class is declared wrongly (raised at import time)."""


class UnknownJobError(BullworkerError):
    """A job name is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown job {name!r}; registered jobs: {listed}")


class PayloadError(BullworkerError, ValueError):
    """A payload or a job option cannot be queued or does not validate."""


class ResultError(BullworkerError, TypeError):
    """A handler returned a value that cannot be stored as JSON."""


class QueueUnavailable(BullworkerError):
    """Redis refused the connection, or did not answer within the configured timeout."""

    exit_code = EXIT_UNREACHABLE


class DependencyError(BullworkerError):
    """A job's constructor dependencies cannot be resolved."""


class JobTimeout(BullworkerError, TimeoutError):
    """A handler ran longer than its class's ``TIMEOUT``."""


class BullmqIncompatible(BullworkerError):
    """The installed bullmq is outside the supported range or lacks what bullworker relies on."""

    exit_code = EXIT_CONFIG


class NodeBullmqUnsupported(BullworkerError):
    """A queue's meta names a Node BullMQ too old to share the queue safely (refused to queue)."""

    exit_code = EXIT_CONFIG


class JobFailed(BullworkerError):
    """A handler raised; the message is ``"<ExceptionClass>: <message>"`` (BullMQ's ``failedReason``)."""


class DurationError(BullworkerError, ValueError):
    """A duration or a point in time that cannot be read."""

    exit_code = EXIT_USAGE


class StoreError(BullworkerError):
    """A job store operation failed. Messages never contain a password."""


class StoreUnavailable(StoreError):
    """The database cannot be reached (down, refused, timed out, locked)."""

    exit_code = EXIT_UNREACHABLE


class LeaderError(BullworkerError, RuntimeError):
    """Misuse of a leader election (e.g. starting it twice)."""


class MetricsError(BullworkerError):
    """Metrics cannot be served (prometheus_client missing, port taken...)."""

    exit_code = EXIT_CONFIG


class OpsError(BullworkerError):
    """An operations command cannot do what was asked (bad id, nothing selected...)."""


class AppLoadError(BullworkerError):
    """``--app`` does not name an importable bullworker App."""

    exit_code = EXIT_USAGE


class UnrecoverableError(BullworkerError):
    """Raised by a handler: fail the job now, without its remaining retries.

    BullMQ's own ``UnrecoverableError`` works the same way; either way the
    failed reason is ``"UnrecoverableError: <message>"``.
    """


class Snooze(BullworkerError):
    """Raised by a handler: run the job again in ``delay`` seconds, without spending an attempt.

    Node BullMQ's ``job.moveToDelayed`` followed by ``throw new DelayedError()``.
    """

    def __init__(self, delay: float) -> None:
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not delay >= 0:
            raise ValueError(f"Snooze needs a delay of 0 or more seconds, got {delay!r}")
        self.delay = float(delay)
        super().__init__(f"snoozed for {self.delay:g} s")


class JobCancelled(BullworkerError):
    """A job was cancelled: raised inside its handler, or by ``JobContext.raise_if_cancelled``.

    The job fails at once, without retries, with the reason ``"JobCancelled: <reason>"``,
    and is recorded as ``cancelled``.
    """


class RateLimited(BullworkerError):
    """Raised by a handler: the queue is rate-limited for ``delay`` seconds.

    The job goes back to waiting without spending an attempt, and no worker of
    the queue (Node's too) takes a job until the delay is over: Node BullMQ's
    ``queue.rateLimit(ms)`` followed by ``throw Worker.RateLimitError()``.
    """

    def __init__(self, delay: float) -> None:
        if not isinstance(delay, int | float) or isinstance(delay, bool) or not delay > 0:
            raise ValueError(f"RateLimited needs a delay of more than 0 seconds, got {delay!r}")
        self.delay = float(delay)
        super().__init__(f"rate limited for {self.delay:g} s")


class JobFailedError(BullworkerError):
    """A job waited for (``wait=True``, ``handle.result()``) failed or was cancelled.

    ``reason`` is its failed reason as BullMQ stores it, ``stack`` the stack
    traces of its runs (Python's or Node's), ``status`` ``failed`` or ``cancelled``.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        stack: list[str] | None = None,
        status: str = "failed",
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.stack = list(stack or [])
        self.status = status


class ResultUnavailable(BullworkerError):
    """A job waited for is neither in Redis nor in ``_jobs``: its result cannot be known."""
