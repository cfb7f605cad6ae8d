"""Durations and points in time as operators type them: ``30d``, ``1h30m``, ISO datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bullworker.core.errors import DurationError as DurationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_EXAMPLES = "use a number and a unit (s, m, h, d, w), e.g. 30s, 15m, 1h, 1h30m, 2d, 1w"


def parse_duration(text: str) -> timedelta:
    """``"30d"`` → 30 days; units s, m, h, d, w, combinable (``"1h30m"``); must be positive."""
    compact = text.strip().lower().replace(" ", "")
    if not _WHOLE.fullmatch(compact):
        raise DurationError(f"invalid duration {text!r}: {_EXAMPLES}")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise DurationError(f"invalid duration {text!r}: it must be longer than zero")
    return timedelta(seconds=seconds)


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """A duration ago (``"1h"``) or an ISO datetime (naive means UTC), as an aware UTC datetime."""
    try:
        return (now or datetime.now(UTC)) - parse_duration(text)
    except DurationError:
        pass
    raw = text.strip()
    try:
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise DurationError(
            f"invalid time {text!r}: give a duration ago (e.g. 30m, 1h, 2d) "
            "or an ISO datetime (e.g. 2024-05-01T12:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
