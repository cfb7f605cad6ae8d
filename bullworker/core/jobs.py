"""Job classes, the ``@worker_job`` decorator, the registry and validation."""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from bullworker.core.errors import JobDefinitionError, PayloadError, ResultError, UnknownJobError
from bullworker.core.limits import check_rate_limit

In = TypeVar("In")
Out = TypeVar("Out")
J = TypeVar("J", bound="type[BaseJob[Any, Any]]")

#: Largest integer Node reads back exactly (``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INT = 2**53 - 1


class BaseJob(Generic[In, Out]):
    """Base class of every job: subclass it as ``BaseJob[InType, OutType]``.

    ``handle`` may be ``async def`` or a plain ``def`` (run in a thread).
    Class attributes configure it; all are optional.
    """

    #: Queue of the job; ``None`` means the configured default (``BULL_QUEUE``).
    QUEUE_NAME: ClassVar[str | None] = None
    #: Cron pattern (5 fields, or 6 with seconds first) that schedules the job.
    CRON_SCHEDULE: ClassVar[str | None] = None
    #: Timezone of ``CRON_SCHEDULE``; ``None`` means the configured ``CRON_TZ``.
    CRON_TZ: ClassVar[str | None] = None
    #: Payload of every cron run (``None`` means ``{}``); checked when the runner starts.
    CRON_DATA: ClassVar[dict[str, Any] | None] = None
    #: BullMQ options applied under the producer's own (``attempts``, ``backoff``...).
    JOB_OPTIONS: ClassVar[dict[str, Any]] = {}
    #: Seconds a run may take before it fails with :class:`JobTimeout`.
    TIMEOUT: ClassVar[float | None] = None
    #: ``(max jobs, per seconds)``: at most that many jobs of the class's queue start in
    #: any such window, across every worker of the queue (BullMQ's ``limiter``).
    RATE_LIMIT: ClassVar[tuple[int, float] | None] = None

    def handle(self, data: In) -> Out | typing.Awaitable[Out]:
        """Run the job. It may take the job context second: ``handle(self, data, job)``."""
        raise NotImplementedError


@dataclass(eq=False)
class JobDefinition:
    """What the registry knows of one job class."""

    name: str
    cls: type[BaseJob[Any, Any]]
    input_type: Any = Any
    output_type: Any = Any
    is_async: bool = True
    #: ``handle(self, data, job)``: the handler takes a ``JobContext`` second.
    takes_context: bool = False
    _adapters: dict[str, Any] = field(default_factory=dict, repr=False)

    def queue(self, default_queue: str) -> str:
        return self.cls.QUEUE_NAME or default_queue

    def _adapter(self, which: str) -> Any:
        """A pydantic TypeAdapter for the input or output type, or None for Any."""
        if which not in self._adapters:
            typ = self.input_type if which == "in" else self.output_type
            if typ is Any or isinstance(typ, TypeVar):
                self._adapters[which] = None
            else:
                from pydantic import TypeAdapter  # imported lazily: keeps start-up fast

                self._adapters[which] = TypeAdapter(_pydantic_compatible(typ))
        return self._adapters[which]

    def prepare(self) -> None:
        """Build the payload and result validators now, not on the first job (a few ms each)."""
        self._adapter("in")
        self._adapter("out")

    def validate_input(self, data: Any) -> Any:
        """Validate a payload against ``In``; return the value the handler gets."""
        adapter = self._adapter("in")
        if adapter is None:
            return data
        from pydantic import ValidationError

        try:
            return adapter.validate_python(data)
        except ValidationError as exc:
            raise PayloadError(f"{self.name}: invalid payload: {_describe(exc)}") from None

    def to_wire(self, data: Any) -> Any:
        """The JSON payload to queue for ``data`` (validated, models dumped)."""
        if data is None:
            data = {}
        if _is_plain_json(data):
            self.validate_input(data)
            check_json(data, what=f"{self.name} payload")
            return data
        adapter = self._adapter("in")
        if adapter is None:
            check_json(data, what=f"{self.name} payload")
            return data
        value = adapter.dump_python(self.validate_input(data), mode="json")
        check_json(value, what=f"{self.name} payload")
        return value

    def result_to_wire(self, result: Any) -> Any:
        """Turn a handler's return value into JSON or raise :class:`ResultError`."""
        if not _is_plain_json(result):
            adapter = self._adapter("out")
            try:
                if adapter is not None:
                    result = adapter.dump_python(result, mode="json")
                elif hasattr(result, "model_dump") or dataclasses.is_dataclass(result):
                    from pydantic import TypeAdapter

                    result = TypeAdapter(type(result)).dump_python(result, mode="json")
            except Exception as exc:
                raise ResultError(
                    f"{self.name} returned a {type(result).__name__}, which is not JSON: {exc}"
                ) from None
        try:
            check_json(result, what=f"{self.name} result")
        except PayloadError as exc:
            raise ResultError(str(exc)) from None
        return result

    def result_from_wire(self, value: Any) -> Any:
        """A stored JSON result read back as ``Out`` (as is when ``Out`` is ``Any``)."""
        adapter = self._adapter("out")
        if adapter is None:
            return value
        from pydantic import ValidationError

        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            out = getattr(self.output_type, "__name__", None) or repr(self.output_type)
            raise ResultError(
                f"{self.name}: its result does not read back as {out}: {_describe(exc)}"
            ) from None


def _pydantic_compatible(typ: Any, _seen: dict[Any, Any] | None = None) -> Any:
    """Rebuild ``typing.TypedDict`` types as ``typing_extensions`` ones.

    Before Python 3.12 pydantic refuses ``typing.TypedDict``; users should not
    have to care which module their TypedDict came from.
    """
    if sys.version_info >= (3, 12):
        return typ
    import typing_extensions

    seen = {} if _seen is None else _seen
    make_typeddict: Any = typing_extensions.TypedDict
    if typing.is_typeddict(typ) and type(typ) is not type(make_typeddict("_", {})):
        if typ not in seen:
            hints = typing.get_type_hints(typ, include_extras=True)
            fields = {
                key: (
                    _pydantic_compatible(hint, seen)
                    if key in typ.__required_keys__
                    else typing_extensions.NotRequired[_pydantic_compatible(hint, seen)]
                )
                for key, hint in hints.items()
            }
            seen[typ] = make_typeddict(typ.__name__, fields)
        return seen[typ]
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is None or not args:
        return typ
    converted = tuple(_pydantic_compatible(a, seen) for a in args)
    if converted == args:
        return typ
    if origin in (typing.Union, types.UnionType):
        return typing.Union[converted]  # noqa: UP007  (a runtime tuple of types)
    try:
        return typ.copy_with(converted)
    except AttributeError:
        return origin[converted]


def _describe(exc: Any) -> str:
    """``field.path: message; ...`` of a pydantic error; a message about the value as a
    whole has no path."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


_JSON_SCALARS = (str, int, float, bool, type(None))


def _is_plain_json(value: Any) -> bool:
    return isinstance(value, (dict, list, *_JSON_SCALARS))


def check_json(value: Any, *, what: str = "value") -> None:
    """Reject what Node cannot read back: non-JSON types, NaN, unsafe integers."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        where = f"{path}: " if path else ""  # nothing for the value as a whole
        if kind is int:
            if not -MAX_SAFE_INT <= item <= MAX_SAFE_INT:
                raise PayloadError(
                    f"{what}: {where}integer {item} is beyond 2^53 (Node would round it)"
                )
        elif kind is float:
            if not math.isfinite(item):
                raise PayloadError(f"{what}: {where}{item} is not valid JSON")
        elif kind is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    raise PayloadError(f"{what}: {where}key {key!r} is not a string")
                stack.append((sub, f"{path}.{key}" if path else key))
        elif kind is list or kind is tuple:
            stack.extend((sub, f"{path}[{i}]") for i, sub in enumerate(item))
        elif isinstance(item, str):  # a subclass, e.g. the JobHandle queue_job returns
            continue
        else:
            raise PayloadError(f"{what}: {where}{kind.__name__} is not JSON")


def _type_args(cls: type) -> tuple[Any, Any]:
    """``(In, Out)`` from ``class X(BaseJob[In, Out])``, or ``(Any, Any)``."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, BaseJob):
                args = typing.get_args(base)
                if len(args) == 2:
                    return args[0], args[1]
    return Any, Any


class JobRegistry:
    """Job classes by name. Names are unique; re-registering the same class is allowed."""

    def __init__(self) -> None:
        self._by_name: dict[str, JobDefinition] = {}

    def register(self, cls: type[BaseJob[Any, Any]], name: str | None = None) -> JobDefinition:
        if not (isinstance(cls, type) and issubclass(cls, BaseJob)):
            raise JobDefinitionError(f"@worker_job() needs a BaseJob subclass, got {cls!r}")
        job_name = name or cls.__name__
        if not job_name or ":" in job_name:
            raise JobDefinitionError(
                f"{cls.__qualname__}: job name {job_name!r} is empty or has ':'"
            )
        existing = self._by_name.get(job_name)
        if existing is not None and _identity(existing.cls) != _identity(cls):
            raise JobDefinitionError(
                f"job name {job_name!r} is already used by {_identity(existing.cls)}; "
                f"give {_identity(cls)} another name with @worker_job(name=...)"
            )
        handle = getattr(cls, "handle", None)
        if handle is None or handle is BaseJob.handle:
            raise JobDefinitionError(f"{cls.__qualname__} must define handle(self, data)")
        queue = cls.QUEUE_NAME
        if queue is not None and (not isinstance(queue, str) or not queue or ":" in queue):
            raise JobDefinitionError(
                f"{cls.__qualname__}.QUEUE_NAME {queue!r} must be a name without ':'"
            )
        if cls.CRON_SCHEDULE is not None:
            from bullworker.core.cron import validate_pattern

            validate_pattern(cls.CRON_SCHEDULE, owner=cls.__qualname__, tz=cls.CRON_TZ)
        if cls.TIMEOUT is not None and cls.TIMEOUT <= 0:
            raise JobDefinitionError(f"{cls.__qualname__}.TIMEOUT must be positive")
        if cls.RATE_LIMIT is not None:
            check_rate_limit(cls.RATE_LIMIT, cls.__qualname__)
        in_type, out_type = _type_args(cls)
        definition = JobDefinition(
            name=job_name,
            cls=cls,
            input_type=in_type,
            output_type=out_type,
            is_async=inspect.iscoroutinefunction(handle),
            takes_context=_takes_context(cls, handle),
        )
        self._by_name[job_name] = definition
        cls.__bullworker_name__ = job_name  # type: ignore[attr-defined]
        return definition

    def get(self, name: str) -> JobDefinition:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownJobError(name, self.names()) from None

    def find(self, name: str) -> JobDefinition | None:
        return self._by_name.get(name)

    def definition_of(self, cls: type[BaseJob[Any, Any]]) -> JobDefinition:
        name = getattr(cls, "__bullworker_name__", None)
        definition = self._by_name.get(name) if name else None
        if definition is None or definition.cls is not cls:
            raise UnknownJobError(getattr(cls, "__name__", repr(cls)), self.names())
        return definition

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def queues(self, default_queue: str) -> list[str]:
        return sorted({d.queue(default_queue) for d in self})

    def __iter__(self) -> Iterator[JobDefinition]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)


def _takes_context(cls: type, handle: Callable[..., Any]) -> bool:
    """Whether ``handle`` takes the job context after ``data`` (``handle(self, data, job)``)."""
    try:
        params = list(inspect.signature(handle).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    required = [p for p in positional if p.default is p.empty and p.kind != p.VAR_POSITIONAL]
    if not positional or len(required) > 2:
        raise JobDefinitionError(
            f"{cls.__qualname__}.handle must take (self, data) or (self, data, job), "
            f"not {len(required)} required arguments after self"
        )
    return len(positional) >= 2 or positional[0].kind == positional[0].VAR_POSITIONAL


def _identity(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: The registry ``@worker_job()`` uses unless told otherwise.
default_registry = JobRegistry()


def worker_job(*, name: str | None = None, registry: JobRegistry | None = None) -> Callable[[J], J]:
    """Register a job class under its class name (or ``name``)."""

    def decorate(cls: J) -> J:
        (registry if registry is not None else default_registry).register(cls, name)
        return cls

    return decorate
