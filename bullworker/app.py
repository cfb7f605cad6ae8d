"""The app: config, a punq container, the producer and (maybe) the runner."""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import punq

from bullworker.config.settings import AppConfig
from bullworker.core.errors import DependencyError
from bullworker.core.hooks import JobHook
from bullworker.core.jobs import BaseJob, JobRegistry, default_registry
from bullworker.producer import WorkerService
from bullworker.producer.results import Finished
from bullworker.runtime.backoff import Backoffs, BackoffStrategy
from bullworker.runtime.runner import Runner

log = logging.getLogger("bullworker.app")

T = TypeVar("T")


class App:
    """Holds what a service shares: config, DI container, WorkerService, runner.

    ``async with app:`` starts the runner when the config says so (DESIGN §5)
    and stops it, bounded by ``SHUTDOWN_GRACE``, on exit.
    """

    def __init__(
        self,
        config: AppConfig,
        *,
        enable_worker: bool = False,
        providers: Iterable[Any] = (),
        registry: JobRegistry | None = None,
        hooks: Iterable[JobHook] = (),
        tracing: bool | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
    ) -> None:
        self.config = config
        self.hooks: list[JobHook] = list(hooks)
        #: Named backoff strategies jobs may use (``backoff: {"type": name}``).
        self.backoffs = Backoffs(backoff_strategies)
        self.tracing = _enable_tracing(self.hooks, tracing)
        self.enable_worker = enable_worker
        self.registry = registry if registry is not None else default_registry
        self.container = punq.Container()
        self._provided: set[Any] = set()
        self.container.register(AppConfig, instance=config)
        if type(config) is not AppConfig:
            self.container.register(type(config), instance=config)
        self.worker_service = WorkerService(config, self.registry)
        self.worker_service.propagate_trace = self.tracing
        # A result waited for, once the recorder moved the job from Redis to _jobs.
        self.worker_service.history = self._recorded_end
        self.container.register(WorkerService, instance=self.worker_service)
        self.container.register(App, instance=self)
        for provider in providers:
            self.provide(provider)
        self.runner: Runner | None = None
        self._registered_jobs: set[type[Any]] = set()

    async def _recorded_end(self, queue: str, job_id: str) -> Finished | None:
        """How the job ``queue:job_id`` ended, from its latest row in ``_jobs``."""
        from bullworker.history.store import store_for

        async with store_for(self.config) as store:
            rows = await store.get(f"{queue}:{job_id}")
        if not rows:
            return None
        row = max(rows, key=lambda r: (r.completed_at, r.attempt))
        if row.status == "completed":
            return Finished("completed", value=row.result)
        result = row.result if isinstance(row.result, dict) else {}
        stack = result.get("stack")
        return Finished(
            "cancelled" if row.status == "cancelled" else "failed",
            reason=row.reason or "",
            stack=[str(s) for s in stack] if isinstance(stack, list) else [],
        )

    def provide(self, provider: Any, instance: Any = None) -> None:
        """Make a class (or an instance of it) resolvable by job constructors."""
        if instance is not None:
            self.container.register(provider, instance=instance)
        elif isinstance(provider, type):
            self.container.register(provider, scope=punq.Scope.singleton)
            self._provided.add(provider)  # built by the container: DependencyError looks inside
        else:
            self.container.register(type(provider), instance=provider)

    def resolve(self, kind: type[T]) -> T:
        """Build (or fetch) an instance of ``kind`` from the container."""
        try:
            return self.container.resolve(kind)
        except punq.MissingDependencyError:
            found = None
            if kind in self._provided:
                found = _unresolved(self.container, self._provided, kind)
            detail, missing = found or (f"{_type_name(kind)} is not provided", kind)
            raise DependencyError(
                f"cannot resolve {_type_name(kind)}: {detail}{_fix(missing)}"
            ) from None

    def build_job(self, cls: type[BaseJob[Any, Any]]) -> BaseJob[Any, Any]:
        """A fresh job instance with its constructor dependencies injected.

        DependencyError names the job class, the parameter and the type nothing provides.
        """
        if cls.__init__ is object.__init__:
            return cls()
        if cls not in self._registered_jobs:
            self.container.register(cls)  # transient: a fresh instance per run
            self._registered_jobs.add(cls)
        try:
            return self.container.resolve(cls)  # type: ignore[no-any-return]
        except (punq.MissingDependencyError, punq.InvalidForwardReferenceError, TypeError) as exc:
            found = _unresolved(self.container, self._provided, cls)
            if found is None:
                if isinstance(exc, TypeError):
                    raise  # raised by a constructor itself
                found = (str(exc), None)
            detail, missing = found
            raise DependencyError(
                f"missing dependency of {cls.__qualname__}: {detail}{_fix(missing)}"
            ) from None

    def create_runner(
        self, *, queues: list[str] | None = None, concurrency: int | None = None
    ) -> Runner:
        """A runner for this app's jobs (``bullworker start`` uses it)."""
        if not self.enable_worker:
            raise RuntimeError("create_app(enable_worker=True) is needed to run jobs")
        return Runner(
            config=self.config,
            registry=self.registry,
            factory=self.build_job,
            queues=queues,
            concurrency=concurrency,
            hooks=self.hooks,
            backoffs=self.backoffs,
        )

    async def start(self, *, run_worker: bool | None = None) -> None:
        """Start what should start; ``run_worker`` overrides the config's choice."""
        wanted = self.config.runner_enabled if run_worker is None else run_worker
        if self.enable_worker and wanted and self.runner is None:
            from bullworker.observe.logs import default_logging

            # A program that set up no logging (uvicorn, a script) still shows the runner's lines.
            default_logging(self.config.log_level, self.config.log_format, trace_ids=self.tracing)
            runner = self.create_runner()
            await runner.start()
            self.runner = runner

    async def stop(self, grace: float | None = None) -> None:
        """Stop the runner (bounded by the grace) and close connections."""
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.stop(grace)
        await self.worker_service.close()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _type_name(hint: Any) -> str:
    return hint.__qualname__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _fix(missing: Any) -> str:
    if missing is None:
        return ""
    return (
        f"; provide it with create_app(providers=[...]) or "
        f"app.provide({_type_name(missing)}, instance)"
    )


def _unresolved(
    container: punq.Container, provided: set[Any], owner: type, seen: frozenset[type] = frozenset()
) -> tuple[str, Any] | None:
    """The first constructor parameter of ``owner`` the container cannot resolve: why, and
    the type nothing provides (None when an annotation is what is missing).

    ``provided``: the classes registered to be built, whose own parameters are looked into.
    """
    init = typing.cast(Any, owner).__init__
    if init is object.__init__ or owner in seen:
        return None
    try:
        hints = typing.get_type_hints(init)
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
    except Exception as exc:  # a forward reference to a name that is not defined...
        return f"the annotations of {owner.__qualname__}.__init__ cannot be read ({exc})", None
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not param.empty:
            continue  # punq passes the default
        where = f"parameter {param.name!r}"
        hint = hints.get(param.name)
        if hint is None:
            return f"{where} has no type annotation, so nothing can be injected into it", None
        try:
            container.resolve(hint)
        except punq.MissingDependencyError:
            inner = None
            if hint in provided:
                inner = _unresolved(container, provided, hint, seen | {owner})
            if inner is not None:
                return f"{where} needs {_type_name(hint)}, whose {inner[0]}", inner[1]
            return f"{where} needs {_type_name(hint)}, which is not provided", hint
        except Exception:
            continue  # built, but its constructor failed: not a missing provider
    return None


def create_app(
    *,
    config: AppConfig | None = None,
    enable_worker: bool = False,
    providers: Iterable[Any] = (),
    registry: JobRegistry | None = None,
    hooks: Iterable[JobHook] = (),
    tracing: bool | None = None,
    backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
) -> App:
    """Create an app. Without ``enable_worker`` it can queue jobs but never runs them.

    ``tracing``: OpenTelemetry trace propagation and a span per job run; ``None``
    (the default) turns it on when ``opentelemetry`` is importable.
    ``backoff_strategies``: named retry delays, ``fn(attempt, error, job) ->
    seconds | None``, for jobs whose ``backoff`` option names them (docs/jobs.md).
    """
    return App(
        config if config is not None else AppConfig(),
        enable_worker=enable_worker,
        providers=providers,
        registry=registry,
        hooks=hooks,
        tracing=tracing,
        backoff_strategies=backoff_strategies,
    )


def _enable_tracing(hooks: list[JobHook], tracing: bool | None) -> bool:
    """Resolve ``tracing=`` and put a TracingHook first (unless one is given)."""
    from bullworker.core.trace import tracing_available
    from bullworker.observe.tracing import TracingHook

    enabled = tracing_available() if tracing is None else tracing
    if enabled and not any(isinstance(hook, TracingHook) for hook in hooks):
        hooks.insert(0, TracingHook())  # first: later hooks and their logs see the span
    return enabled
