"""How bullmq records a failed run: the handler's stack trace, and retry delays with jitter.

bullmq appends ``traceback.format_exc()`` to a failed job's ``stacktrace``:
with bullworker's processor that is the wrapping ``JobFailed``, chained to the
handler's error, through bullworker's and bullmq's frames. The dispatcher
gives the failure a ``handler_stack`` (the handler's frames alone), and a job
the worker runs records that instead.

bullmq's built-in ``fixed`` and ``exponential`` backoffs ignore
``backoff.jitter``; Node BullMQ spreads the delay over ``[delay * (1 - jitter),
delay]``. :func:`use_jitter` makes bullmq compute them as Node does.
"""

from __future__ import annotations

import functools
import random
import sys
import traceback
from collections.abc import Callable
from typing import Any

Strategy = Callable[[int, Any, Any, Any], int]


def _update_stacktrace(job: Any) -> None:
    """``Job.updateStacktrace`` that prefers the failure's ``handler_stack``."""
    failure = sys.exc_info()[1]
    stack = getattr(failure, "handler_stack", None) or traceback.format_exc()
    limit = job.opts.get("stackTraceLimit")
    job.stacktrace.append(stack)
    if limit == 0:
        job.stacktrace = []
    elif limit:
        job.stacktrace = job.stacktrace[-limit:]


def use_handler_stack(job: Any) -> None:
    """Make a failed run of ``job`` record the handler's stack trace."""
    job.updateStacktrace = functools.partial(_update_stacktrace, job)


def _jittered(delay: float, backoff: Any) -> int:
    jitter = backoff.get("jitter") if isinstance(backoff, dict) else None
    if not isinstance(jitter, int | float) or isinstance(jitter, bool) or not 0 < jitter <= 1:
        return round(delay)
    return int(random.random() * delay * jitter + delay * (1 - jitter))


def _fixed(delay: int) -> Strategy:
    def strategy(attempts_made: int, kind: Any, err: Any, job: Any) -> int:
        return _jittered(delay or 0, job.opts.get("backoff"))

    return strategy


def _exponential(delay: int) -> Strategy:
    def strategy(attempts_made: int, kind: Any, err: Any, job: Any) -> int:
        return _jittered(round(2 ** (attempts_made - 1) * (delay or 0)), job.opts.get("backoff"))

    return strategy


def use_jitter() -> None:
    """Make bullmq's built-in backoffs honour ``jitter`` as Node's do (idempotent)."""
    from bullmq.backoffs import Backoffs

    Backoffs.builtin_strategies["fixed"] = _fixed
    Backoffs.builtin_strategies["exponential"] = _exponential
