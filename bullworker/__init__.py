"""bullworker: typed, class-based background jobs on BullMQ queues shared with Node.

The names below load on first use (PEP 562), so ``bullworker --help`` and
other commands that do not need Redis or BullMQ do not pay for importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App, create_app
    from .config import AppConfig, RedisSettings
    from .errors import (
        BullworkerError,
        ConfigError,
        DependencyError,
        JobDefinitionError,
        JobTimeout,
        PayloadError,
        QueueUnavailable,
        ResultError,
        UnknownJobError,
    )
    from .hooks import JobHook, JobRun
    from .jobs import BaseJob, JobRegistry, default_registry, worker_job
    from .queueing import QueuedJob, WorkerService
    from .runner import JobFailed, Runner

#: Public name -> the module that defines it.
_EXPORTS = {
    "App": "app",
    "create_app": "app",
    "AppConfig": "config",
    "RedisSettings": "config",
    "BullworkerError": "errors",
    "ConfigError": "errors",
    "DependencyError": "errors",
    "JobDefinitionError": "errors",
    "JobTimeout": "errors",
    "PayloadError": "errors",
    "QueueUnavailable": "errors",
    "ResultError": "errors",
    "UnknownJobError": "errors",
    "JobHook": "hooks",
    "JobRun": "hooks",
    "BaseJob": "jobs",
    "JobRegistry": "jobs",
    "default_registry": "jobs",
    "worker_job": "jobs",
    "QueuedJob": "queueing",
    "WorkerService": "queueing",
    "JobFailed": "runner",
    "Runner": "runner",
}

__all__ = [
    "App",
    "AppConfig",
    "BaseJob",
    "BullworkerError",
    "ConfigError",
    "DependencyError",
    "JobDefinitionError",
    "JobFailed",
    "JobHook",
    "JobRegistry",
    "JobRun",
    "JobTimeout",
    "PayloadError",
    "QueueUnavailable",
    "QueuedJob",
    "RedisSettings",
    "ResultError",
    "Runner",
    "UnknownJobError",
    "WorkerService",
    "create_app",
    "default_registry",
    "worker_job",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bullworker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
