"""The one place that touches BullMQ's internals, and the check that they are still there.

bullworker relies on names of the bullmq package that are not its public API
(methods it overrides or replaces, attributes its Worker sets in ``__init__``,
quirks of 3.4.x). All such uses live in this package: here, and the Worker
subclass in :mod:`.worker`. Each relied-on name is listed once in
:data:`REQUIRED`; a runner checks them, and the installed version against
:data:`SUPPORTED`, before it starts (:func:`require_bullmq`), so an upgrade
that renames one refuses to start in one line instead of misbehaving under load.

This module imports bullmq only inside functions: it must load, and say what
is wrong, whatever bullmq is installed.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata
import inspect
import re
import textwrap
from collections.abc import Callable
from typing import Any

from bullworker.core.errors import BullmqIncompatible

#: The bullmq versions bullworker is tested with (pyproject.toml says the same).
SUPPORTED = ">=3.4.4,<3.5"
_LOWEST = (3, 4, 4)
_BELOW = (3, 5)

#: Every bullmq name bullworker relies on beyond the public API, as (owner,
#: attribute): ``"module"`` and a name in it; ``"module:Class"`` and a class
#: attribute or one its ``__init__`` sets on ``self``; ``"module:Class.method"``
#: and a parameter of that method.
REQUIRED: tuple[tuple[str, str], ...] = (
    # BullWorker overrides these two: a rename would silently drop fetch-next
    # and the malformed-job checks.
    ("bullmq.worker:Worker", "processJob"),
    ("bullmq.worker:Worker", "nextJobFromJobData"),
    # Fetch-next swaps the backend's moveToCompleted for one that passes fetch_next.
    ("bullmq.worker:Worker", "backend"),
    ("bullmq.backends.redis_backend:RedisBackend", "moveToCompleted"),
    ("bullmq.backends.redis_backend:RedisBackend.moveToCompleted", "fetch_next"),
    # A graceful close keeps renewing locks until the taken jobs are done.
    ("bullmq.worker:Worker", "lockManager"),
    ("bullmq.lock_manager:LockManager", "close"),
    # A graceful close stops the fetch loop and waits for what it left running.
    ("bullmq.worker:Worker", "closing"),
    ("bullmq.worker:Worker", "paused"),
    ("bullmq.worker:Worker", "forceClosing"),
    ("bullmq.worker:Worker", "resume_event"),
    ("bullmq.worker:Worker", "waiting"),
    ("bullmq.worker:Worker", "processing"),
    ("bullmq.worker:Worker", "jobs"),
    # The `drained` event follows the worker's own drained flag; `progress` is
    # emitted where a job's updateProgress reaches the worker's backend.
    ("bullmq.worker:Worker", "drained"),
    ("bullmq.job:Job", "backend"),
    ("bullmq.backends.redis_backend:RedisBackend", "updateProgress"),
    # A job failed as malformed is built by hand and needs the worker's token.
    ("bullmq.job:Job", "token"),
    # bullworker's retry policy goes on the clients bullmq builds.
    ("bullmq.worker:Worker", "client"),
    ("bullmq.worker:Worker", "bclient"),
    ("bullmq.queue:Queue", "client"),
    # Flows: the FlowProducer's client gets the retry policy too, and a parent's
    # children are read with the client of the worker that runs it (through its job).
    ("bullmq.flow_producer:FlowProducer", "backend"),
    ("bullmq.backends.redis_backend:RedisBackend", "conn"),
    # Learning the server's version before run() keeps delayed jobs on time.
    ("bullmq.worker:Worker", "blockingRedisConnection"),
    ("bullmq.redis_connection:RedisConnection", "getRedisVersion"),
    # Cron runs computed DST-safe: bullmq's scheduler with another repeat strategy.
    ("bullmq.job_scheduler", "JobScheduler"),
    ("bullmq.job_scheduler:JobScheduler.__init__", "repeat_strategy"),
    ("bullmq.job_scheduler", "default_repeat_strategy"),
    ("bullmq.worker:Worker", "_job_scheduler"),
    ("bullmq.queue:Queue", "_job_scheduler"),
    # A failed run records the handler's stack; built-in backoffs get Node's jitter.
    ("bullmq.job:Job", "updateStacktrace"),
    ("bullmq.job:Job", "stacktrace"),
    ("bullmq.backoffs:Backoffs", "builtin_strategies"),
    # get_scheduler turns this method's ValueError for a missing id into None.
    ("bullmq.queue:Queue", "getJobScheduler"),
    # A job that failed for good takes the next one too (fetch-next).
    ("bullmq.backends.redis_backend:RedisBackend", "moveToFailed"),
    ("bullmq.backends.redis_backend:RedisBackend.moveToFailed", "fetch_next"),
    # Rate limits as Node's worker honours them: the fetch waits for limitUntil
    # (read from the limiter's TTL that these two return); a handler's RateLimited
    # goes around the processor and is moved back with the port's unused script.
    ("bullmq.worker:Worker", "getNextJob"),
    ("bullmq.worker:Worker", "moveToActive"),
    ("bullmq.worker:Worker", "limitUntil"),
    ("bullmq.worker:Worker", "processor"),
    ("bullmq.scripts", "raw2NextJobData"),
    ("bullmq.redis_connection", "loadScript"),
    ("bullmq.scripts:Scripts", "finishedErrors"),
    # Node's client name on the blocking connection, and the worker's name in the
    # packed options of moveToActive and of a fetch-next moveToFinished (processedBy).
    ("bullmq.worker:Worker", "clientName"),
    ("bullmq.worker:Worker", "_ensure_client_names"),
    ("bullmq.redis_connection:RedisConnection", "set_client_name"),
    ("bullmq.worker:Worker", "workerName"),
    ("bullmq.worker:Worker", "prefix"),
    ("bullmq.worker:Worker", "scripts"),
    ("bullmq.backends.redis_backend:RedisBackend", "moveToActive"),
    ("bullmq.scripts:Scripts", "commands"),
    ("bullmq.scripts:Scripts", "getKeys"),
    ("bullmq.scripts:Scripts", "keys"),
    ("bullmq.scripts:Scripts", "moveToFinished"),
    # Queueing where Node BullMQ 5.x keeps a paused queue's jobs (node_versions): the
    # port's add scripts in bullworker's MULTI, as its addBulk does, then a script of ours.
    ("bullmq.queue:Queue", "scripts"),
    ("bullmq.queue:Queue", "jobsOpts"),
    ("bullmq.queue:Queue", "qualifiedName"),
    ("bullmq.scripts:Scripts", "addJob"),
    ("bullmq.scripts:Scripts.addJob", "pipe"),
)


def installed_version() -> str | None:
    """The version of the bullmq that ``import bullmq`` loads, None if there is none."""
    try:
        return importlib.metadata.version("bullmq")
    except importlib.metadata.PackageNotFoundError:
        try:
            module = importlib.import_module("bullmq")
        except ImportError:
            return None
        return str(getattr(module, "__version__", "unknown"))


def _numbers(version: str) -> tuple[int, ...]:
    found = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in found.group().split(".")) if found else ()


def supported(version: str) -> bool:
    """Whether ``version`` is in :data:`SUPPORTED`."""
    numbers = _numbers(version)
    return bool(numbers) and _LOWEST <= numbers < _BELOW


def _resolve(owner: str) -> Any:
    module, _, path = owner.partition(":")
    found: Any = importlib.import_module(module)
    for name in filter(None, path.split(".")):
        found = getattr(found, name)
    return found


@functools.cache
def _set_in_init(owner: str) -> frozenset[str] | None:
    """The ``self.<name>`` attributes the ``__init__`` of a class or of its bases assign.

    None when no source can be read (a bytecode-only install): then the check
    cannot tell, and does not refuse.
    """
    names: set[str] = set()
    read = False
    for klass in _resolve(owner).__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        except (OSError, TypeError, SyntaxError):
            continue
        read = True
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return frozenset(names) if read else None


def present(owner: str, attribute: str) -> bool:
    """Whether the installed bullmq has ``attribute`` on ``owner`` (see :data:`REQUIRED`)."""
    try:
        target = _resolve(owner)
    except Exception:  # not there, or a module that fails to import
        return False
    if inspect.isfunction(target):
        return attribute in inspect.signature(target).parameters
    if hasattr(target, attribute):
        return True
    if inspect.isclass(target):
        assigned = _set_in_init(owner)
        return assigned is None or attribute in assigned
    return False


def _name(owner: str, attribute: str) -> str:
    module, _, path = owner.partition(":")
    if not path:
        return f"{module.removeprefix('bullmq.')}.{attribute}"
    if "." in path:  # a function: the attribute is one of its parameters
        return f"{path.removesuffix('.__init__')}({attribute}=)"
    return f"{path}.{attribute}"


def missing() -> list[str]:
    """The names of :data:`REQUIRED` that the installed bullmq lacks."""
    return [_name(owner, attr) for owner, attr in REQUIRED if not present(owner, attr)]


def check_bullmq() -> list[str]:
    """What keeps bullworker from using the installed bullmq; empty when nothing does."""
    version = installed_version()
    if version is None:
        return [f"bullmq is not installed (bullworker supports bullmq{SUPPORTED})"]
    problems = []
    if not supported(version):
        problems.append(f"bullmq {version} is outside the supported range {SUPPORTED}")
    gone = missing()
    if gone:
        problems.append(f"bullmq {version} lacks {', '.join(gone)}")
    return problems


def require_bullmq() -> None:
    """Raise :class:`BullmqIncompatible` (one line) unless the installed bullmq can be used."""
    version = installed_version()
    if version is None:
        raise BullmqIncompatible(f"bullmq is not installed: bullworker supports bullmq{SUPPORTED}")
    gone = missing()
    if supported(version) and not gone:
        return
    lacks = f"; it lacks {', '.join(gone)}" if gone else ""
    raise BullmqIncompatible(
        f"bullmq {version} cannot be used: bullworker supports bullmq{SUPPORTED}{lacks}"
    )


# --- what the rest of the package reaches through --------------------------------


def queue_client(queue: Any) -> Any:
    """The redis-py client a bullmq Queue built."""
    return queue.client


def flow_producer_client(producer: Any) -> Any:
    """The redis-py client a bullmq FlowProducer built."""
    return producer.backend.conn


def job_client(job: Any) -> Any:
    """The redis-py client of whoever holds a bullmq Job (the worker running it)."""
    return job.backend.conn


def default_repeat_strategy(millis: int, opts: dict[str, Any]) -> int | None:
    """bullmq's own next-run computation of a job scheduler."""
    from bullmq.job_scheduler import default_repeat_strategy as strategy

    return strategy(millis, opts)  # type: ignore[no-any-return]


def use_repeat_strategy(owner: Any, strategy: Callable[[int, dict[str, Any]], int | None]) -> None:
    """Make a bullmq Queue or Worker compute scheduler runs with ``strategy``."""
    from bullmq.job_scheduler import JobScheduler

    owner._job_scheduler = JobScheduler(owner, repeat_strategy=strategy)


async def get_scheduler(queue: Any, scheduler_id: str) -> dict[str, Any] | None:
    """``Queue.getJobScheduler``; bullmq 3.4.4 raises ValueError instead of returning None."""
    try:
        return await queue.getJobScheduler(scheduler_id)  # type: ignore[no-any-return]
    except ValueError:
        return None
