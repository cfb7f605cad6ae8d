"""The app: config, a punq container, the producer and (maybe) the runner."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any, TypeVar

import punq

from bullworker.config.settings import AppConfig
from bullworker.core.errors import DependencyError
from bullworker.core.hooks import JobHook
from bullworker.core.jobs import BaseJob, JobRegistry, default_registry
from bullworker.producer import WorkerService
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
    ) -> None:
        self.config = config
        self.hooks: list[JobHook] = list(hooks)
        self.tracing = _enable_tracing(self.hooks, tracing)
        self.enable_worker = enable_worker
        self.registry = registry if registry is not None else default_registry
        self.container = punq.Container()
        self.container.register(AppConfig, instance=config)
        if type(config) is not AppConfig:
            self.container.register(type(config), instance=config)
        self.worker_service = WorkerService(config, self.registry)
        self.worker_service.propagate_trace = self.tracing
        self.container.register(WorkerService, instance=self.worker_service)
        self.container.register(App, instance=self)
        for provider in providers:
            self.provide(provider)
        self.runner: Runner | None = None
        self._registered_jobs: set[type[Any]] = set()

    def provide(self, provider: Any, instance: Any = None) -> None:
        """Make a class (or an instance of it) resolvable by job constructors."""
        if instance is not None:
            self.container.register(provider, instance=instance)
        elif isinstance(provider, type):
            self.container.register(provider, scope=punq.Scope.singleton)
        else:
            self.container.register(type(provider), instance=provider)

    def resolve(self, kind: type[T]) -> T:
        """Build (or fetch) an instance of ``kind`` from the container."""
        try:
            return self.container.resolve(kind)
        except punq.MissingDependencyError as exc:
            raise DependencyError(
                f"cannot resolve {getattr(kind, '__name__', kind)}: {exc}"
            ) from None

    def build_job(self, cls: type[BaseJob[Any, Any]]) -> BaseJob[Any, Any]:
        """A fresh job instance with its constructor dependencies injected."""
        if cls.__init__ is object.__init__:
            return cls()
        if cls not in self._registered_jobs:
            self.container.register(cls)  # transient: a fresh instance per run
            self._registered_jobs.add(cls)
        try:
            return self.container.resolve(cls)  # type: ignore[no-any-return]
        except punq.MissingDependencyError as exc:
            raise DependencyError(f"missing dependency {exc}") from None

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
        )

    async def start(self, *, run_worker: bool | None = None) -> None:
        """Start what should start; ``run_worker`` overrides the config's choice."""
        wanted = self.config.runner_enabled if run_worker is None else run_worker
        if self.enable_worker and wanted and self.runner is None:
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


def create_app(
    *,
    config: AppConfig | None = None,
    enable_worker: bool = False,
    providers: Iterable[Any] = (),
    registry: JobRegistry | None = None,
    hooks: Iterable[JobHook] = (),
    tracing: bool | None = None,
) -> App:
    """Create an app. Without ``enable_worker`` it can queue jobs but never runs them.

    ``tracing``: OpenTelemetry trace propagation and a span per job run; ``None``
    (the default) turns it on when ``opentelemetry`` is importable.
    """
    return App(
        config if config is not None else AppConfig(),
        enable_worker=enable_worker,
        providers=providers,
        registry=registry,
        hooks=hooks,
        tracing=tracing,
    )


def _enable_tracing(hooks: list[JobHook], tracing: bool | None) -> bool:
    """Resolve ``tracing=`` and put a TracingHook first (unless one is given)."""
    from bullworker.core.trace import tracing_available
    from bullworker.observe.tracing import TracingHook

    enabled = tracing_available() if tracing is None else tracing
    if enabled and not any(isinstance(hook, TracingHook) for hook in hooks):
        hooks.insert(0, TracingHook())  # first: later hooks and their logs see the span
    return enabled
