"""Run jobs in unit tests, in this process and without Redis, through the runner's dispatch.

::

    from bullworker.testing import queued, run_job

    app = create_app(config=AppConfig(app_env="test"), providers=[Mailer])
    assert await run_job(app, EchoJob, {"name": "x"}) == {"greeting": "Hello, x"}
    assert [job.name for job in queued(app)] == ["SendWelcomeEmail"]

``run_job`` validates the payload, builds the job with the app's container,
calls the app's hooks, encodes the result and wraps failures exactly as the
runner does. It opens no connection; a handler that queues jobs does so
through the app's ``WorkerService``, which keeps them for :func:`queued`
when the app is in test mode (``APP_ENV=test``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Mapping
from typing import Any, TypeVar, overload

from bullmq import DelayedError, UnrecoverableError

from bullworker.app import App
from bullworker.core import keys
from bullworker.core.errors import ConfigError, JobFailed
from bullworker.core.jobs import BaseJob, JobDefinition, check_json
from bullworker.core.options import check_options
from bullworker.producer import QueuedJob
from bullworker.runtime.backoff import Backoffs
from bullworker.runtime.context import JobContext
from bullworker.runtime.dispatch import Dispatcher, JobFactory, call_handler
from bullworker.runtime.inline import InlineJob, JobEffects

__all__ = ["JobEffects", "JobFailed", "QueuedJob", "UnrecoverableError", "queued", "run_job"]

Out = TypeVar("Out")

_ids = itertools.count(1)


class _InlineHost:
    """Dispatch's view of an app: its registry, hooks and container."""

    def __init__(self, app: App) -> None:
        self.registry = app.registry
        self.hooks = app.hooks
        self.factory: JobFactory = app.build_job
        self.backoffs: Backoffs = app.backoffs

    async def run_handler(
        self, definition: JobDefinition, instance: Any, data: Any, job: JobContext
    ) -> Any:
        # No thread pool of its own: a sync handler runs in the loop's default executor.
        return await call_handler(definition, instance, data, job)


@overload
async def run_job(
    app: App,
    job: type[BaseJob[Any, Out]],
    data: Any = None,
    *,
    attempt: int = 1,
    attempts: int | None = None,
    job_id: str | None = None,
    opts: Mapping[str, Any] | None = None,
    effects: JobEffects | None = None,
    children_values: Mapping[Any, Any] | None = None,
    children_failures: Mapping[str, str] | None = None,
) -> Out: ...


@overload
async def run_job(
    app: App,
    job: str,
    data: Any = None,
    *,
    attempt: int = 1,
    attempts: int | None = None,
    job_id: str | None = None,
    opts: Mapping[str, Any] | None = None,
    effects: JobEffects | None = None,
    children_values: Mapping[Any, Any] | None = None,
    children_failures: Mapping[str, str] | None = None,
) -> Any: ...


async def run_job(
    app: App,
    job: type[BaseJob[Any, Any]] | str,
    data: Any = None,
    *,
    attempt: int = 1,
    attempts: int | None = None,
    job_id: str | None = None,
    opts: Mapping[str, Any] | None = None,
    effects: JobEffects | None = None,
    children_values: Mapping[Any, Any] | None = None,
    children_failures: Mapping[str, str] | None = None,
) -> Any:
    """Run one job now, as the runner would run it off the queue, and return its result.

    ``job`` is a class registered in ``app``'s registry, or a job name. ``data``
    is what ``queue_job`` takes: plain JSON goes to the runner's validation
    as it would arrive from Redis; a model or dataclass is dumped first, as
    ``queue_job`` dumps it. ``opts`` are job options (``JOB_OPTIONS`` apply
    under them); ``attempt`` (1 for the first run) and ``attempts`` are what
    hooks and the retry decision see.

    Returns the result as a consumer reads it back: the stored JSON, read as
    the class's ``Out`` type when it declares one. Raises what the runner's
    processor raises: :class:`JobFailed` (``"<ExceptionClass>: <message>"``,
    the handler's exception as ``__cause__``) when the handler, the container
    or the result encoding fails; ``bullmq.UnrecoverableError``
    (``"PayloadError: ..."``, ``"UnknownJobError: ..."``) for a payload that
    does not validate or a name not registered, and when the handler raises
    one. A result that does not read back as ``Out`` raises ``ResultError``.

    The handler's job context reports to ``effects`` (pass a
    :class:`JobEffects` to read its progress values, log lines and data
    updates). A handler that raises ``Snooze`` or ``RateLimited`` raises it
    here too (after ``effects.delayed_until`` is set for a snooze).

    A parent of a flow reads ``children_values`` with ``job.children_values()``:
    ``{"<queue>:<id>": result}``, or ``{(ChildClass, "<queue>:<id>"): result}``
    (a class or a job name) for a child that ``job.children_values(ChildClass)``
    returns; and ``children_failures`` (``{"<queue>:<id>": reason}``) with
    ``job.children_failures()``.
    """
    if isinstance(job, str):
        name, definition = job, app.registry.find(job)
    else:
        definition = app.registry.definition_of(job)  # UnknownJobError if not in this app
        name = definition.name
    options = check_options(
        {
            **(definition.cls.JOB_OPTIONS if definition is not None else {}),
            **(opts or {}),
            **({"attempts": attempts} if attempts is not None else {}),
        }
    )
    allowed = max(1, int(options.get("attempts") or 1))
    if not 1 <= attempt <= allowed:
        raise ValueError(f"attempt must be 1 to {allowed} (the job's attempts), got {attempt}")
    now = int(time.time() * 1000)
    inline = InlineJob(
        name=name,
        id=job_id or f"inline-{next(_ids)}",
        data=_payload(definition, name, data),
        opts=options,
        attemptsMade=attempt - 1,
        timestamp=now,
        processedOn=now,
        effects=effects if effects is not None else JobEffects(),
        children=_children(app, children_values or {}),
        ignored_failures={
            _child_key(app, child): str(reason)
            for child, reason in (children_failures or {}).items()
        },
    )
    queue = app.config.bull_queue if definition is None else definition.queue(app.config.bull_queue)
    # Its own task, as on the runner: the task's name and the hooks' context
    # variables stay with the job.
    try:
        wire = await asyncio.create_task(
            Dispatcher(_InlineHost(app), queue, app.config.bull_prefix)(inline)
        )
    except DelayedError as exc:  # a Snooze, once the job "moved to delayed"
        raise exc.__cause__ or exc from None
    stored = json.loads(json.dumps(wire))  # what BullMQ stores and a consumer reads
    return stored if definition is None else definition.result_from_wire(stored)


def _child_key(app: App, child: str) -> str:
    queue, _, child_id = str(child).partition(":")
    if not (queue and child_id):
        raise ValueError(f"a child is <queue>:<jobId>, got {child!r}")
    return keys.job_key(app.config.bull_prefix, queue, child_id)


def _children(app: App, values: Mapping[Any, Any]) -> dict[str, tuple[str | None, Any]]:
    """``children_values``: ``{"<queue>:<id>": result}``, or ``{(JobClass or name,
    "<queue>:<id>"): result}`` for the children ``children_values(JobClass)`` reads."""
    found: dict[str, tuple[str | None, Any]] = {}
    for child, value in values.items():
        name: str | None = None
        if isinstance(child, tuple):
            job, child = child
            name = job if isinstance(job, str) else app.registry.definition_of(job).name
        check_json(value, what=f"result of child {child}")
        found[_child_key(app, child)] = (name, json.loads(json.dumps(value)))
    return found


def _payload(definition: JobDefinition | None, name: str, data: Any) -> Any:
    """The JSON a runner would read from Redis for ``data``."""
    if data is None:
        return {}
    if definition is not None and not isinstance(data, dict | list | tuple | str | int | float):
        data = definition.to_wire(data)  # a model or dataclass, dumped as queue_job does
    check_json(data, what=f"{name} payload")
    return json.loads(json.dumps(data))  # a copy, tuples as lists: no object is shared


def queued(app: App, job: type[BaseJob[Any, Any]] | str | None = None) -> list[QueuedJob]:
    """The jobs queued through ``app`` so far (of one class or name), oldest first.

    Needs the app in test mode (``APP_ENV=test``), where ``queue_job`` keeps
    jobs instead of sending them to Redis. ``app.worker_service.queued.clear()``
    forgets them.
    """
    if not app.config.is_test:
        raise ConfigError(
            f"queued() needs an app in test mode (APP_ENV=test); this one has "
            f"APP_ENV={app.config.app_env!r}, so its jobs go to Redis"
        )
    kept = list(app.worker_service.queued)
    if job is None:
        return kept
    name = job if isinstance(job, str) else app.registry.definition_of(job).name
    return [item for item in kept if item.name == name]
