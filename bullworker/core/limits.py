"""Rate limits of queues: ``(max jobs, per seconds)``, applied as BullMQ's worker ``limiter``.

A limit comes from a job class (``RATE_LIMIT = (10, 1.0)``) or from the
``QUEUE_RATE_LIMITS`` setting (``emails=10/1s,reports=5/2m``). BullMQ keeps one
limiter per queue, shared by every worker of it (Node's too), so a queue has
one limit: two classes of a queue that declare different ones are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bullworker.core.errors import ConfigError, JobDefinitionError

if TYPE_CHECKING:
    from bullworker.core.jobs import JobDefinition

#: The shortest window BullMQ can count in (its limiter key expires in whole milliseconds).
MIN_PER = 0.001


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max`` jobs of a queue start in any window of ``per`` seconds."""

    max: int
    per: float

    @property
    def duration_ms(self) -> int:
        """The window in milliseconds, as BullMQ's ``limiter.duration``."""
        return max(1, round(self.per * 1000))

    def limiter(self) -> dict[str, int]:
        """BullMQ's worker option ``limiter``: ``{"max": ..., "duration": ms}``."""
        return {"max": self.max, "duration": self.duration_ms}

    def __str__(self) -> str:
        return f"{self.max}/{self.per:g}s"


def _problem(value: Any) -> str | None:
    """Why ``value`` is not ``(max jobs, per seconds)``; None when it is."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        return "must be a pair (max jobs, per seconds)"
    count, per = value
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return f"max jobs must be a positive int, got {count!r}"
    if isinstance(per, bool) or not isinstance(per, int | float) or not math.isfinite(per):
        return f"per seconds must be a positive number, got {per!r}"
    if per < MIN_PER:
        return f"per seconds must be at least {MIN_PER:g} (1 ms), got {per!r}"
    return None


def check_rate_limit(value: Any, owner: str) -> RateLimit:
    """``value`` as a :class:`RateLimit`, or :class:`JobDefinitionError` naming ``owner``."""
    problem = _problem(value)
    if problem is not None:
        raise JobDefinitionError(f"{owner}.RATE_LIMIT {value!r}: {problem}, e.g. (10, 1.0)")
    count, per = value
    return RateLimit(count, float(per))


def parse_rate_limits(raw: str | None, setting: str) -> dict[str, RateLimit]:
    """``emails=10/1s,reports=5/2m`` as ``{queue: RateLimit}``; :class:`ConfigError` if unreadable.

    The window is a duration (``1s``, ``0.5s``, ``2m``, ``1h``) or a number of seconds.
    """
    from bullworker.core.durations import DurationError, parse_duration

    limits: dict[str, RateLimit] = {}
    for item in filter(None, (part.strip() for part in (raw or "").split(","))):
        example = f"{setting}: {item!r} is not queue=max/window, e.g. emails=10/1s"
        queue, equals, spec = (s.strip() for s in item.partition("="))
        count, slash, window = (s.strip() for s in spec.partition("/"))
        if not (queue and equals and slash and count.isdigit()):
            raise ConfigError(example)
        if ":" in queue:
            raise ConfigError(f"{setting}: a queue name cannot contain ':' ({queue})")
        if queue in limits:
            raise ConfigError(f"{setting}: queue {queue!r} is given twice")
        try:
            per = float(window)
        except ValueError:
            try:
                per = parse_duration(window).total_seconds()
            except DurationError as exc:
                raise ConfigError(f"{setting}: {item!r}: {exc}") from None
        problem = _problem((int(count), per))
        if problem is not None:
            raise ConfigError(f"{setting}: {item!r}: {problem}")
        limits[queue] = RateLimit(int(count), per)
    return limits


def queue_rate_limits(
    definitions: Iterable[JobDefinition],
    default_queue: str,
    configured: Mapping[str, RateLimit] | None = None,
) -> dict[str, RateLimit]:
    """Each limited queue's :class:`RateLimit`: its classes' ``RATE_LIMIT``, then ``configured``.

    ``configured`` (``QUEUE_RATE_LIMITS``) wins over the classes. Two classes of
    one queue with different limits raise :class:`JobDefinitionError` naming both,
    unless ``configured`` sets that queue's limit.
    """
    configured = configured or {}
    found: dict[str, tuple[RateLimit, str]] = {}
    for definition in definitions:
        declared = definition.cls.RATE_LIMIT
        if declared is None:
            continue
        limit = check_rate_limit(declared, definition.cls.__qualname__)
        queue = definition.queue(default_queue)
        first = found.setdefault(queue, (limit, definition.name))
        if first[0] != limit and queue not in configured:
            raise JobDefinitionError(
                f"queue {queue!r} has two rate limits: {first[1]}.RATE_LIMIT is {first[0]} and "
                f"{definition.name}.RATE_LIMIT is {limit}; BullMQ keeps one limiter per queue: "
                "declare the same RATE_LIMIT on both, or set the queue's in QUEUE_RATE_LIMITS"
            )
    limits = {queue: limit for queue, (limit, _) in found.items()}
    limits.update(configured)
    return limits
