"""`within`: a deadline that never loses the cancellation of a loop's task."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bullworker.core.tasks import within

Wait = Callable[[Awaitable[Any], float], Awaitable[Any]]


async def test_within_returns_the_result_or_raises_timeout() -> None:
    assert await within(asyncio.sleep(0, result="done"), 1.0) == "done"
    assert await within(asyncio.sleep(0, result="no limit"), None) == "no limit"
    with pytest.raises(TimeoutError):
        await within(asyncio.Event().wait(), 0.01)


async def stops_when_cancelled(wait: Wait) -> bool:
    """Whether a loop that waits on an event with ``wait`` ends when its task is cancelled
    just as one of its waits finishes (the event set a moment before)."""
    event, stop = asyncio.Event(), False

    async def loop() -> None:
        while not stop:
            with contextlib.suppress(TimeoutError):  # the periodic sweep of a recorder
                await wait(event.wait(), 0.05)
            event.clear()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)  # the loop waits on the event
    event.set()
    for _ in range(2):  # the wait finishes; the loop's wake-up is scheduled, not yet run
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait([task], timeout=0.5)
    stopped = task.done()
    stop = True  # a loop that went on ends now
    await asyncio.gather(task, return_exceptions=True)
    return stopped


async def test_a_cancel_as_the_wait_finishes_stops_the_loop() -> None:
    assert await stops_when_cancelled(within)


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="asyncio.wait_for loses it on Python 3.11 only"
)
async def test_asyncio_wait_for_loses_that_cancel_on_python_3_11() -> None:
    # Why `within` exists: a recorder's stop once waited for such a loop forever.
    assert not await stops_when_cancelled(asyncio.wait_for)


def test_the_package_waits_with_within() -> None:
    package = Path(__file__).resolve().parent.parent / "bullworker"
    calls = [
        f"{path.relative_to(package)}:{n}"
        for path in sorted(package.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bwait_for\(", line) and "`within` needs a task" not in line
        and "def wait_for" not in line and "self.wait_for(" not in line
    ]  # fmt: skip
    assert calls == [], "use bullworker.core.tasks.within, not asyncio.wait_for"
