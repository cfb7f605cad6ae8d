"""Background tasks: stopping one (cancel, then wait), and waiting with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing if None) and wait for it; what it raises besides the
    cancellation propagates."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """``await awaitable``, or TimeoutError after ``seconds`` (None: no limit).

    Use it instead of ``asyncio.wait_for``: on Python 3.11, ``wait_for`` returns the
    result when a cancellation arrives just as the awaited thing finishes, so a loop
    stopped by cancelling its task may never end. ``asyncio.timeout`` keeps it.
    """
    async with asyncio.timeout(seconds):
        return await awaitable
