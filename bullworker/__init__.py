"""bullworker: typed, class-based background jobs on BullMQ queues shared with Node.

The names below load on first use (PEP 562), so ``bullworker --help`` and
other commands that do not need Redis or BullMQ do not pay for importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bullworker.core.version import __version__ as __version__

if TYPE_CHECKING:
    from bullworker.app import App, create_app
    from bullworker.config.settings import AppConfig, RedisSettings
    from bullworker.core.errors import (
        AppLoadError,
        BullmqIncompatible,
        BullworkerError,
        ConfigError,
        DependencyError,
        DurationError,
        JobCancelled,
        JobDefinitionError,
        JobFailed,
        JobFailedError,
        JobTimeout,
        LeaderError,
        MetricsError,
        NodeBullmqUnsupported,
        OpsError,
        PayloadError,
        QueueUnavailable,
        RateLimited,
        ResultError,
        ResultUnavailable,
        Snooze,
        StoreError,
        StoreUnavailable,
        UnknownJobError,
        UnrecoverableError,
    )
    from bullworker.core.hooks import JobHook, JobRun
    from bullworker.core.jobs import BaseJob, JobRegistry, default_registry, worker_job
    from bullworker.history.store import JobRecord, JobStore, open_store
    from bullworker.producer import QueuedJob, WorkerService
    from bullworker.producer.flows import FlowHandle, FlowJob
    from bullworker.producer.results import JobHandle
    from bullworker.runtime.context import JobContext, JobParent, current_job
    from bullworker.runtime.runner import Runner

#: Public name -> the module that defines it.
_EXPORTS = {
    "App": "app",
    "create_app": "app",
    "AppConfig": "config.settings",
    "RedisSettings": "config.settings",
    "AppLoadError": "core.errors",
    "BullmqIncompatible": "core.errors",
    "BullworkerError": "core.errors",
    "ConfigError": "core.errors",
    "DependencyError": "core.errors",
    "DurationError": "core.errors",
    "JobDefinitionError": "core.errors",
    "JobFailed": "core.errors",
    "JobTimeout": "core.errors",
    "LeaderError": "core.errors",
    "MetricsError": "core.errors",
    "NodeBullmqUnsupported": "core.errors",
    "OpsError": "core.errors",
    "PayloadError": "core.errors",
    "QueueUnavailable": "core.errors",
    "ResultError": "core.errors",
    "StoreError": "core.errors",
    "StoreUnavailable": "core.errors",
    "UnknownJobError": "core.errors",
    "UnrecoverableError": "core.errors",
    "Snooze": "core.errors",
    "RateLimited": "core.errors",
    "JobCancelled": "core.errors",
    "JobFailedError": "core.errors",
    "ResultUnavailable": "core.errors",
    "JobHandle": "producer.results",
    "FlowHandle": "producer.flows",
    "FlowJob": "producer.flows",
    "JobHook": "core.hooks",
    "JobRun": "core.hooks",
    "BaseJob": "core.jobs",
    "JobRegistry": "core.jobs",
    "default_registry": "core.jobs",
    "worker_job": "core.jobs",
    "JobRecord": "history.store",
    "JobStore": "history.store",
    "open_store": "history.store",
    "QueuedJob": "producer",
    "WorkerService": "producer",
    "Runner": "runtime.runner",
    "JobContext": "runtime.context",
    "JobParent": "runtime.context",
    "current_job": "runtime.context",
}

__all__ = [
    "App",
    "AppConfig",
    "AppLoadError",
    "BaseJob",
    "BullmqIncompatible",
    "BullworkerError",
    "ConfigError",
    "DependencyError",
    "DurationError",
    "FlowHandle",
    "FlowJob",
    "JobCancelled",
    "JobContext",
    "JobDefinitionError",
    "JobFailed",
    "JobFailedError",
    "JobHandle",
    "JobHook",
    "JobParent",
    "JobRecord",
    "JobRegistry",
    "JobRun",
    "JobStore",
    "JobTimeout",
    "LeaderError",
    "MetricsError",
    "NodeBullmqUnsupported",
    "OpsError",
    "PayloadError",
    "QueueUnavailable",
    "QueuedJob",
    "RateLimited",
    "RedisSettings",
    "ResultError",
    "ResultUnavailable",
    "Runner",
    "Snooze",
    "StoreError",
    "StoreUnavailable",
    "UnknownJobError",
    "UnrecoverableError",
    "WorkerService",
    "create_app",
    "current_job",
    "default_registry",
    "open_store",
    "worker_job",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bullworker' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
