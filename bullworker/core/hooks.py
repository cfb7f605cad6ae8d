"""Hooks: code that runs around every job (metrics, tracing, your own).

Subclass :class:`JobHook`, override what you need and pass instances to
``create_app(hooks=[...])``. Hooks run in the job's task, so a context
variable set in ``job_started`` is visible to the handler (and to a sync
handler's thread). An exception in a hook is logged and never fails the job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("bullworker.hooks")

#: How a run ended, as ``job_finished`` gets it: ``delayed`` when the handler
#: snoozed or was rate-limited (the job runs again later, no attempt spent).
Outcome = Literal["completed", "failed", "delayed"]


@dataclass(slots=True)
class JobRun:
    """One run of one job, as hooks see it."""

    queue: str
    name: str
    id: str
    #: 1 for the first run, 2 for the first retry...
    attempt: int
    #: Total attempts allowed (``attempts`` option, at least 1).
    attempts: int
    #: When the job was queued and when this run started (epoch ms, from BullMQ).
    queued_at_ms: int
    started_at_ms: int
    opts: dict[str, Any]
    data: Any
    #: Free space for hooks to keep per-run state (a span, a timer...).
    state: dict[str, Any] = field(default_factory=dict)


class JobHook:
    """No-op base class; override any method."""

    def job_started(self, run: JobRun) -> None:
        """Before the handler runs (after the payload validated)."""

    def job_finished(
        self,
        run: JobRun,
        outcome: Outcome,
        error: BaseException | None,
        duration: float,
        *,
        will_retry: bool,
    ) -> None:
        """After the handler returned or raised; ``duration`` in seconds."""

    def job_stalled(self, queue: str, job_id: str) -> None:
        """BullMQ found a job whose worker stopped renewing its lock."""


def call_hooks(hooks: list[JobHook], method: str, *args: Any, **kwargs: Any) -> None:
    """Call ``method`` on every hook; log (never raise) what they raise."""
    for hook in hooks:
        try:
            getattr(hook, method)(*args, **kwargs)
        except Exception:
            log.exception("hook %s.%s failed", type(hook).__name__, method)
