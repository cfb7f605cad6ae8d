"""Redis calls with a deadline: an unreachable Redis is one clear error, not a hang."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.config.settings import AppConfig
from bullworker.core.errors import QueueUnavailable
from bullworker.core.tasks import within

T = TypeVar("T")


def no_answer(config: AppConfig, what: str, reason: str) -> QueueUnavailable:
    """The error of a call to ``what`` that Redis did not answer within ``REDIS_TIMEOUT``."""
    return QueueUnavailable(
        f"could not {what}: Redis at {config.redis_settings('bull').describe()} did not answer "
        f"within {config.redis_timeout:g} s ({reason})"
    )


async def bounded(config: AppConfig, what: str, awaitable: Awaitable[T]) -> T:
    """``awaitable`` within ``REDIS_TIMEOUT``; QueueUnavailable if Redis does not answer."""
    try:
        return await within(awaitable, config.redis_timeout)
    except (TimeoutError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
        raise no_answer(config, what, type(exc).__name__) from None
