"""Named backoff strategies, as Node BullMQ's ``settings.backoffStrategy`` provides them.

``create_app(backoff_strategies={"linear": linear})`` where
``linear(attempt, error, job) -> seconds | None``: ``attempt`` is the run
that just failed (1 for the first), ``error`` what its handler raised, ``job``
its :class:`~bullworker.runtime.context.JobContext`; ``None`` fails the job
now. A job whose ``backoff`` is ``{"type": "linear", "delay": ...}`` — from
Python or from a Node producer — waits that long before its next run.
``fixed`` and ``exponential`` are BullMQ's own (with ``jitter`` as Node
computes it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from bullworker.core.errors import ConfigError, JobFailed
from bullworker.runtime.context import JobContext

log = logging.getLogger("bullworker.runner")

#: ``(attempt, error, job) -> seconds to wait, or None to fail the job now``.
BackoffStrategy = Callable[[int, BaseException, JobContext], "float | None"]
#: BullMQ's built-in types.
BUILTIN = ("fixed", "exponential")


class Backoffs:
    """The custom backoff strategies of an app, in the form bullmq's worker calls them."""

    def __init__(self, strategies: Mapping[str, BackoffStrategy] | None = None) -> None:
        self._strategies = dict(strategies or {})
        for name, strategy in self._strategies.items():
            if not isinstance(name, str) or not name or name in BUILTIN:
                raise ConfigError(
                    f"backoff strategy name {name!r} must be a non-empty string other than "
                    f"{' and '.join(BUILTIN)} (BullMQ's own)"
                )
            if not callable(strategy):
                raise ConfigError(f"backoff strategy {name!r} is not callable: {strategy!r}")

    def names(self) -> list[str]:
        """Every backoff type a job may name: BullMQ's and the app's."""
        return [*BUILTIN, *sorted(self._strategies)]

    def unknown(self, backoff: Any) -> str | None:
        """Why ``backoff`` (a job's option) cannot be computed here, or None if it can."""
        if not isinstance(backoff, dict):
            return None
        kind = backoff.get("type")
        if kind in BUILTIN or kind in self._strategies:
            return None
        return (
            f"UnknownBackoffError: backoff type {kind!r} is not registered here; "
            f"known types: {', '.join(self.names())} (create_app(backoff_strategies=...))"
        )

    def __call__(self, attempts_made: int, backoff_type: str, err: Any, job: Any) -> int:
        """bullmq's ``backoffStrategy``: milliseconds to wait, or -1 to fail the job now."""
        strategy = self._strategies.get(backoff_type)
        if strategy is None:
            return -1
        error = err.__cause__ if isinstance(err, JobFailed) and err.__cause__ else err
        queue = getattr(job.queue, "name", "?")
        context = JobContext(job, queue, prefix=getattr(job.queue, "prefix", "bull"))
        try:
            seconds = strategy(attempts_made, error, context)
        except Exception:
            log.exception(
                "backoff strategy %r raised for job %s id=%s; failing the job",
                backoff_type, job.name, job.id,
            )  # fmt: skip
            return -1
        if seconds is None:
            return -1
        return max(0, round(float(seconds) * 1000))
