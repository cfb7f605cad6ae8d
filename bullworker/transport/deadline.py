"""Redis calls with a deadline: an unreachable Redis is one clear error, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullworker.config.settings import AppConfig
from bullworker.core.errors import QueueUnavailable

T = TypeVar("T")


async def bounded(config: AppConfig, what: str, awaitable: Awaitable[T]) -> T:
    """``awaitable`` within ``REDIS_TIMEOUT``; QueueUnavailable if Redis does not answer."""
    settings = config.redis_settings("bull")
    try:
        return await asyncio.wait_for(awaitable, config.redis_timeout)
    except (TimeoutError, OSError, RedisConnectionError, RedisTimeoutError) as exc:
        raise QueueUnavailable(
            f"could not {what}: Redis at {settings.describe()} did not answer within "
            f"{config.redis_timeout:g} s ({type(exc).__name__})"
        ) from None
