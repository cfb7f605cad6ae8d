"""Cron schedules: pattern validation (job schedulers are added by the runner)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import JobDefinitionError


def validate_pattern(pattern: str, *, owner: str, tz: str | None = None) -> None:
    """Check a cron pattern the way BullMQ will evaluate it.

    A 6-field pattern has seconds first, as Node's cron-parser reads it.
    """
    from croniter import croniter

    fields = pattern.split()
    if len(fields) not in (5, 6):
        raise JobDefinitionError(
            f"{owner}.CRON_SCHEDULE {pattern!r} must have 5 fields, or 6 with seconds first"
        )
    try:
        zone = ZoneInfo(tz) if tz else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise JobDefinitionError(f"{owner}.CRON_TZ {tz!r} is not a known timezone") from None
    try:
        croniter(pattern, datetime.now(zone), second_at_beginning=True).get_next(datetime)
    except Exception as exc:
        raise JobDefinitionError(f"{owner}.CRON_SCHEDULE {pattern!r} is invalid: {exc}") from None
