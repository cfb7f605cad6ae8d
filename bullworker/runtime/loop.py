"""The event loop a runner process runs on: uvloop when installed, else asyncio's.

uvloop (``pip install 'bullworker[fast]'``) runs the same code with a faster
loop, and a worker's CPU goes largely to the loop (docs/benchmarks.md).
``EVENT_LOOP=asyncio`` keeps the standard loop, ``EVENT_LOOP=uvloop`` requires uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from bullworker.core.errors import ConfigError

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop factory for ``EVENT_LOOP=choice``; None means asyncio's default."""
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise ConfigError(
                "EVENT_LOOP=uvloop but uvloop is not installed: pip install 'bullworker[fast]'"
            )
        return None
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(choice: str) -> str:
    """``uvloop`` or ``asyncio``: what ``EVENT_LOOP=choice`` runs on here."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the event loop ``EVENT_LOOP=choice`` names."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
