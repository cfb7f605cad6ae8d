"""Rate limits as declared: a class's RATE_LIMIT, QUEUE_RATE_LIMITS, one limit per queue."""

from __future__ import annotations

from typing import Any

import pytest

from bullworker import AppConfig, BaseJob, ConfigError, JobDefinitionError, JobRegistry, RateLimited
from bullworker.core.limits import RateLimit, parse_rate_limits, queue_rate_limits
from bullworker.transport.bullmq_compat.commands import node_client_name


def job_class(name: str, rate_limit: Any, queue: str | None = None) -> type[BaseJob[Any, Any]]:
    async def handle(self: Any, data: Any) -> None:
        return None

    attrs = {"RATE_LIMIT": rate_limit, "QUEUE_NAME": queue, "handle": handle}
    return type(name, (BaseJob,), attrs)


@pytest.mark.parametrize("value", [(10, 1.0), (1, 1), [5, 0.5], (3, 0.001)])
def test_a_valid_rate_limit_registers(value: Any) -> None:
    JobRegistry().register(job_class("Limited", value))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (10, "must be a pair (max jobs, per seconds)"),
        ((10, 1.0, 2), "must be a pair (max jobs, per seconds)"),
        ((0, 1.0), "max jobs must be a positive int, got 0"),
        ((1.5, 1.0), "max jobs must be a positive int, got 1.5"),
        ((True, 1.0), "max jobs must be a positive int, got True"),
        ((10, 0), "per seconds must be at least 0.001 (1 ms), got 0"),
        ((10, -1.0), "per seconds must be at least 0.001 (1 ms), got -1.0"),
        ((10, "1s"), "per seconds must be a positive number, got '1s'"),
        ((10, float("inf")), "per seconds must be a positive number, got inf"),
    ],
)
def test_a_wrong_rate_limit_is_refused_at_registration(value: Any, problem: str) -> None:
    with pytest.raises(JobDefinitionError) as caught:
        JobRegistry().register(job_class("Limited", value))
    assert str(caught.value) == f"Limited.RATE_LIMIT {value!r}: {problem}, e.g. (10, 1.0)"


def test_queue_rate_limits_setting() -> None:
    config = AppConfig(environ={"QUEUE_RATE_LIMITS": " emails=10/1s, reports = 5/2m,fast=3/0.25"})
    assert config.rate_limits == {
        "emails": RateLimit(10, 1.0),
        "reports": RateLimit(5, 120.0),
        "fast": RateLimit(3, 0.25),
    }
    assert config.rate_limits["emails"].limiter() == {"max": 10, "duration": 1000}
    assert str(config.rate_limits["fast"]) == "3/0.25s"
    assert AppConfig(environ={}).rate_limits == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("emails", "QUEUE_RATE_LIMITS: 'emails' is not queue=max/window, e.g. emails=10/1s"),
        ("emails=10", "QUEUE_RATE_LIMITS: 'emails=10' is not queue=max/window, e.g. emails=10/1s"),
        ("=10/1s", "QUEUE_RATE_LIMITS: '=10/1s' is not queue=max/window, e.g. emails=10/1s"),
        (
            "emails=x/1s",
            "QUEUE_RATE_LIMITS: 'emails=x/1s' is not queue=max/window, e.g. emails=10/1s",
        ),
        ("emails=0/1s", "QUEUE_RATE_LIMITS: 'emails=0/1s': max jobs must be a positive int, got 0"),
        ("a:b=1/1s", "QUEUE_RATE_LIMITS: a queue name cannot contain ':' (a:b)"),
        ("a=1/1s,a=2/1s", "QUEUE_RATE_LIMITS: queue 'a' is given twice"),
        ("a=1/0s", "QUEUE_RATE_LIMITS: 'a=1/0s': invalid duration '0s': it must be longer"),
        ("a=1/0.0001", "QUEUE_RATE_LIMITS: 'a=1/0.0001': per seconds must be at least 0.001"),
        ("a=1/soon", "QUEUE_RATE_LIMITS: 'a=1/soon': invalid duration 'soon': use a number"),
    ],
)
def test_a_wrong_queue_rate_limits_setting_stops_the_app(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AppConfig(environ={"QUEUE_RATE_LIMITS": raw})
    assert str(caught.value).startswith(message)


def test_two_classes_of_a_queue_with_different_limits_are_refused_naming_both() -> None:
    registry = JobRegistry()
    registry.register(job_class("Welcome", (10, 1.0), queue="emails"))
    registry.register(job_class("Digest", (10, 1)))  # another queue: no conflict
    registry.register(job_class("Receipt", (10, 1), queue="emails"))  # the same limit
    assert queue_rate_limits(registry, "default") == {
        "emails": RateLimit(10, 1.0),
        "default": RateLimit(10, 1.0),
    }
    registry.register(job_class("Newsletter", (2, 1.0), queue="emails"))
    with pytest.raises(JobDefinitionError) as caught:
        queue_rate_limits(registry, "default")
    assert str(caught.value) == (
        "queue 'emails' has two rate limits: Welcome.RATE_LIMIT is 10/1s and "
        "Newsletter.RATE_LIMIT is 2/1s; BullMQ keeps one limiter per queue: declare the same "
        "RATE_LIMIT on both, or set the queue's in QUEUE_RATE_LIMITS"
    )
    # The setting decides the queue's limit, whatever its classes say.
    configured = parse_rate_limits("emails=3/1s", "QUEUE_RATE_LIMITS")
    assert queue_rate_limits(registry, "default", configured) == {
        "emails": RateLimit(3, 1.0),
        "default": RateLimit(10, 1.0),
    }


def test_rate_limited_needs_a_positive_delay() -> None:
    assert RateLimited(0.5).delay == 0.5
    for delay in (0, -1, True, "1", float("nan")):
        with pytest.raises(ValueError):
            RateLimited(delay)  # type: ignore[arg-type]


def test_the_client_name_is_nodes() -> None:
    # Buffer.from(name).toString('base64') in Node's RedisQueueBackend.clientName.
    assert node_client_name("bull", "emails", "host:42") == "bull:ZW1haWxz:w:host:42"
    assert node_client_name("bull", "é/ü", None) == "bull:w6kvw7w="
