"""Exceptions raised by bullworker's public API."""

from __future__ import annotations


class BullworkerError(Exception):
    """Base class of every error bullworker raises on purpose."""


class ConfigError(BullworkerError):
    """The configuration is invalid (the message never contains secrets)."""


class JobDefinitionError(BullworkerError):
    """A job class is declared wrongly (raised at import time)."""


class UnknownJobError(BullworkerError):
    """A job name is not registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown job {name!r}; registered jobs: {listed}")


class PayloadError(BullworkerError, ValueError):
    """A payload or a job option cannot be queued or does not validate."""


class ResultError(BullworkerError, TypeError):
    """A handler returned a value that cannot be stored as JSON."""


class QueueUnavailable(BullworkerError):
    """Redis did not answer a producer call within the configured timeout."""


class DependencyError(BullworkerError):
    """A job's constructor dependencies cannot be resolved."""


class JobTimeout(BullworkerError, TimeoutError):
    """A handler ran longer than its class's ``TIMEOUT``."""
