"""How many finished jobs stay in Redis after they are recorded, and for how long.

Once the recorder has written a finished job to ``_jobs`` it leaves the job in
Redis for a while, so that Node tools (bull-board's Completed and Failed tabs,
``queue.getJob(id)``) still see it. A :class:`KeepWindow` bounds that by count
(the newest ``completed`` and ``failed`` jobs of a queue) and by age; a job
beyond either bound is removed. ``KEEP_COMPLETED``, ``KEEP_FAILED`` and
``KEEP_AGE`` set the window of every queue, ``QUEUE_KEEP`` (``emails=100/500/10m``)
that of some queues. A count or an age of 0 removes the jobs as soon as they
are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from bullworker.core.errors import ConfigError
from bullworker.core.status import Status

#: What ``KEEP_AGE`` (or the age of a ``QUEUE_KEEP`` entry) says for no age bound.
NO_AGE = "none"


@dataclass(frozen=True, slots=True)
class KeepWindow:
    """The recorded jobs of one queue that stay in Redis: the newest ``completed`` and
    ``failed`` ones, for at most ``age`` seconds (None: no age bound)."""

    completed: int = 1000
    failed: int = 5000
    age: float | None = 3600.0

    def count(self, status: Status) -> int:
        """How many of the newest recorded jobs of the ``status`` set stay."""
        return self.completed if status == "completed" else self.failed

    def at_once(self, status: Status) -> bool:
        """Whether a recorded job of ``status`` leaves Redis as soon as it is recorded."""
        return self.count(status) == 0 or self.age == 0

    @property
    def keeps_nothing(self) -> bool:
        return self.at_once("completed") and self.at_once("failed")

    def __str__(self) -> str:
        age = NO_AGE if self.age is None else f"{self.age:g}s"
        return f"{self.completed}/{self.failed}/{age}"


def parse_age(raw: str, setting: str) -> float | None:
    """``"1h"`` → 3600.0, ``"0"`` → 0.0, ``"none"`` → None; ConfigError if unreadable."""
    from bullworker.core.durations import DurationError, parse_duration

    text = raw.strip().lower()
    if text == NO_AGE:
        return None
    if text in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text).total_seconds()
    except DurationError as exc:
        raise ConfigError(f"{setting}: {exc}; 0 removes at once, {NO_AGE} keeps any age") from None


def _count(raw: object, setting: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError(
            f"{setting}={raw!r} must be a whole number, 0 or more (0: remove at once)"
        )
    return raw


def keep_windows(
    completed: int, failed: int, age: str | None, per_queue: str | None
) -> tuple[KeepWindow, dict[str, KeepWindow]]:
    """The default window (``KEEP_COMPLETED``, ``KEEP_FAILED``, ``KEEP_AGE``) and those of
    ``QUEUE_KEEP``, ``queue=completed/failed/age,...``: a part left empty takes the default
    (``emails=100//10m``), and ``queue=0`` removes that queue's jobs at once. ConfigError if
    a value is unreadable."""
    default = KeepWindow(
        _count(completed, "KEEP_COMPLETED"),
        _count(failed, "KEEP_FAILED"),
        None if age is None else parse_age(age, "KEEP_AGE"),
    )
    windows: dict[str, KeepWindow] = {}
    for item in filter(None, (part.strip() for part in (per_queue or "").split(","))):
        example = (
            f"QUEUE_KEEP: {item!r} is not queue=completed/failed/age, "
            "e.g. emails=100/500/10m (a part left empty takes the default), or emails=0"
        )
        queue, equals, spec = (s.strip() for s in item.partition("="))
        if not (queue and equals and spec) or ":" in queue:
            raise ConfigError(example)
        if queue in windows:
            raise ConfigError(f"QUEUE_KEEP: queue {queue!r} is given twice")
        if spec == "0":
            windows[queue] = KeepWindow(0, 0, 0.0)
            continue
        parts = [s.strip() for s in spec.split("/")]
        if len(parts) != 3 or not all(p.isdigit() for p in parts[:2] if p):
            raise ConfigError(example)
        window = default
        if parts[0]:
            window = replace(window, completed=int(parts[0]))
        if parts[1]:
            window = replace(window, failed=int(parts[1]))
        if parts[2]:
            window = replace(window, age=parse_age(parts[2], f"QUEUE_KEEP ({queue})"))
        windows[queue] = window
    return default, windows
