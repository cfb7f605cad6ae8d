"""bullworker: typed, class-based background jobs on BullMQ queues shared with Node."""

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
