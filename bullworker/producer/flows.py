"""Flows: a parent job that runs once its children are done, queued as one tree.

A :class:`FlowJob` is one job of the tree: a registered job class, or a job
name Python does not know (a Node worker runs it) with its queue. BullMQ's
FlowProducer adds the whole tree in one transaction, so no worker ever sees a
part of it: the children wait (or run) at once, the parent waits in
``waiting-children`` until they are done. A child's failure leaves its parent
waiting for ever unless the child says otherwise, with one of the options
Node names ``failParentOnFailure``, ``continueParentOnFailure``,
``ignoreDependencyOnFailure`` and ``removeDependencyOnFailure`` (here in
snake_case keywords). The parent reads its children's results with
``await job.children_values()`` (see :mod:`bullworker.runtime.context`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bullworker.core import keys
from bullworker.core.errors import PayloadError, QueueUnavailable
from bullworker.core.jobs import BaseJob, JobDefinition, check_json
from bullworker.core.options import check_options
from bullworker.core.trace import inject_trace_context
from bullworker.producer.results import Finished, JobHandle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bullworker.producer.service import WorkerService

Out = TypeVar("Out")

#: The failure options of a child, by keyword, with BullMQ's (Node's) name for each.
FAILURE_OPTIONS = {
    "fail_parent_on_failure": "failParentOnFailure",
    "continue_parent_on_failure": "continueParentOnFailure",
    "ignore_dependency_on_failure": "ignoreDependencyOnFailure",
    "remove_dependency_on_failure": "removeDependencyOnFailure",
}


def _failure_option(name: str, chosen: dict[str, bool], opts: dict[str, Any]) -> str | None:
    """The one BullMQ failure option chosen by keyword (None for none); PayloadError for more."""
    spelled = sorted(set(opts) & set(FAILURE_OPTIONS.values()))
    if spelled:
        snake = {v: k for k, v in FAILURE_OPTIONS.items()}
        raise PayloadError(
            f"{name}: give {', '.join(spelled)} as the keyword "
            f"{', '.join(snake[option] + '=True' for option in spelled)}"
        )
    on = [keyword for keyword, value in chosen.items() if value]
    if len(on) > 1:
        raise PayloadError(
            f"{name}: {' and '.join(on)} cannot be used together: a child's failure "
            "fails its parent, lets it continue, is ignored or is removed; choose one"
        )
    return FAILURE_OPTIONS[on[0]] if on else None


class FlowJob(Generic[Out]):
    """One job of a flow: what ``queue_job`` takes, plus the children it waits for.

    ``FlowJob(JobClass, data, children=[...], **opts)`` for a registered class
    (``data`` validated as its ``In``; the class's queue and ``JOB_OPTIONS``),
    ``FlowJob.named(name, data, queue=...)`` for a job by name (a registered
    name is validated as its class; another one, for a Node worker, only needs
    JSON data). ``opts`` are BullMQ's camelCase job options, as ``queue_job``
    takes them. At most one failure option says what a failure of this job
    (once its attempts are spent) does to its parent; without one the parent
    waits for ever.
    """

    __slots__ = ("children", "data", "failure", "job", "name", "opts", "queue")

    job: type[BaseJob[Any, Out]] | None
    name: str
    data: Any
    queue: str | None
    children: tuple[FlowJob[Any], ...]
    opts: dict[str, Any]
    #: BullMQ's name of the failure option chosen (``failParentOnFailure``...), or None.
    failure: str | None

    def __init__(
        self,
        job: type[BaseJob[Any, Out]],
        data: Any = None,
        *,
        queue: str | None = None,
        children: Sequence[FlowJob[Any]] = (),
        fail_parent_on_failure: bool = False,
        continue_parent_on_failure: bool = False,
        ignore_dependency_on_failure: bool = False,
        remove_dependency_on_failure: bool = False,
        **opts: Any,
    ) -> None:
        if not (isinstance(job, type) and issubclass(job, BaseJob)):
            raise PayloadError(
                f"FlowJob takes a job class, got {job!r}; FlowJob.named(name, ...) takes a name"
            )
        chosen = {
            "fail_parent_on_failure": fail_parent_on_failure,
            "continue_parent_on_failure": continue_parent_on_failure,
            "ignore_dependency_on_failure": ignore_dependency_on_failure,
            "remove_dependency_on_failure": remove_dependency_on_failure,
        }
        self._set(job, job.__name__, data, queue, children, chosen, opts)

    @classmethod
    def named(
        cls,
        name: str,
        data: Any = None,
        *,
        queue: str | None = None,
        children: Sequence[FlowJob[Any]] = (),
        fail_parent_on_failure: bool = False,
        continue_parent_on_failure: bool = False,
        ignore_dependency_on_failure: bool = False,
        remove_dependency_on_failure: bool = False,
        **opts: Any,
    ) -> FlowJob[Any]:
        """A job of the flow by its name, on ``queue`` (default: ``BULL_QUEUE``, or its
        registered class's queue)."""
        if not isinstance(name, str) or not name:
            raise PayloadError(f"a flow job's name must be a non-empty string, got {name!r}")
        node: FlowJob[Any] = cls.__new__(cls)
        chosen = {
            "fail_parent_on_failure": fail_parent_on_failure,
            "continue_parent_on_failure": continue_parent_on_failure,
            "ignore_dependency_on_failure": ignore_dependency_on_failure,
            "remove_dependency_on_failure": remove_dependency_on_failure,
        }
        node._set(None, name, data, queue, children, chosen, opts)
        return node

    def _set(
        self,
        job: type[BaseJob[Any, Out]] | None,
        name: str,
        data: Any,
        queue: str | None,
        children: Sequence[FlowJob[Any]],
        chosen: dict[str, bool],
        opts: dict[str, Any],
    ) -> None:
        if queue is not None and (not isinstance(queue, str) or not queue or ":" in queue):
            raise PayloadError(f"{name}: queue {queue!r} must be a non-empty name without ':'")
        if isinstance(children, FlowJob) or not all(isinstance(c, FlowJob) for c in children):
            raise PayloadError(f"{name}: children must be a list of FlowJob")
        self.job = job
        self.name = name
        self.data = data
        self.queue = queue
        self.children = tuple(children)
        self.failure = _failure_option(name, chosen, opts)
        self.opts = dict(opts)

    def __repr__(self) -> str:
        children = f", {len(self.children)} children" if self.children else ""
        return f"<FlowJob {self.name}{children}>"


class FlowHandle(JobHandle[Out]):
    """A :class:`JobHandle` of a job of a flow: its id, ``await .result()``, and the
    handles of its children (``.children``, in the order given, each with its own)."""

    name: str
    children: list[FlowHandle[Any]]

    def __new__(
        cls,
        job_id: str,
        *,
        queue: str,
        waiter: Callable[[str, str, float | None], Awaitable[Finished]],
        definition: JobDefinition | None = None,
        name: str = "",
        children: Sequence[FlowHandle[Any]] = (),
    ) -> FlowHandle[Out]:
        handle: FlowHandle[Out] = super().__new__(  # type: ignore[assignment]
            cls, job_id, queue=queue, waiter=waiter, definition=definition
        )
        handle.name = name
        handle.children = list(children)
        return handle


@dataclass
class _Node:
    """A job of the flow once checked: what goes to Redis."""

    name: str
    queue: str
    payload: Any
    opts: dict[str, Any]
    definition: JobDefinition | None
    children: list[_Node] = field(default_factory=list)

    def to_bullmq(self) -> dict[str, Any]:
        """The flow as bullmq's ``FlowProducer.add`` takes it."""
        return {
            "name": self.name,
            "queueName": self.queue,
            "data": self.payload,
            "opts": self.opts,
            "children": [child.to_bullmq() for child in self.children],
        }


def _check(service: WorkerService, flow: FlowJob[Any], *, root: bool) -> _Node:
    if not isinstance(flow, FlowJob):
        raise PayloadError(f"queue_flow takes a FlowJob, got {flow!r}")
    if root and flow.failure is not None:
        raise PayloadError(
            f"{flow.name}: {flow.failure} is for a child; the root of a flow has no parent"
        )
    registry = service.registry
    definition = (
        registry.definition_of(flow.job) if flow.job is not None else registry.find(flow.name)
    )
    given = {k: v for k, v in flow.opts.items() if v is not None}
    if definition is not None:
        payload = definition.to_wire(flow.data)
        opts = service._prepare(definition, given)
        queue = flow.queue or definition.queue(service.config.bull_queue)
    else:
        payload = {} if flow.data is None else flow.data
        check_json(payload, what=f"{flow.name} payload")
        opts = check_options(given) if given else {}
        queue = flow.queue or service.config.bull_queue
    service._check_size(flow.name, payload)
    service._refuse_removal(flow.name, queue, opts)
    if service.propagate_trace:
        opts = inject_trace_context(opts)
    if flow.failure is not None:
        opts = {**opts, flow.failure: True}
    node = _Node(flow.name, queue, payload, opts, definition)
    node.children = [_check(service, child, root=False) for child in flow.children]
    return node


async def queue_flow(service: WorkerService, flow: FlowJob[Out]) -> FlowHandle[Out]:
    """Queue ``flow`` through ``service`` (``WorkerService.queue_flow``)."""
    root = _check(service, flow, root=True)
    if service.config.is_test:
        return _keep(service, root, None)
    producer = service._flow_producer()
    tree = await service._call(f"queue flow {root.name}", producer.add(root.to_bullmq()))
    if tree is None:  # the producer is closing
        raise QueueUnavailable(f"could not queue flow {root.name}: the WorkerService is closed")
    return _handles(service, root, tree)


def _handles(service: WorkerService, node: _Node, tree: dict[str, Any]) -> FlowHandle[Any]:
    children = [
        _handles(service, child, added)
        for child, added in zip(node.children, tree.get("children") or [], strict=True)
    ]
    return FlowHandle(
        str(tree["job"].id),
        queue=node.queue,
        waiter=service.wait_for,
        definition=node.definition,
        name=node.name,
        children=children,
    )


def _keep(service: WorkerService, node: _Node, parent: dict[str, str] | None) -> FlowHandle[Any]:
    """``APP_ENV=test``: keep the jobs (``queued(app)``), parent first, children after it."""
    opts = node.opts if parent is None else {**node.opts, "parent": parent}
    job_id = service._keep(node.name, node.queue, node.payload, opts)
    link = {"id": job_id, "queue": keys.qualified_name(service.config.bull_prefix, node.queue)}
    return FlowHandle(
        job_id,
        queue=node.queue,
        waiter=service.wait_for,
        definition=node.definition,
        name=node.name,
        children=[_keep(service, child, link) for child in node.children],
    )
