"""Cron expressions: checked as BullMQ reads them, and their next fire times.

One function, :func:`next_fire_times`, computes when a pattern fires; the
runner's schedules, ``bullworker schedules`` and ``doctor`` all use it, so they
agree across DST changes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bullworker.core.errors import JobDefinitionError

#: Croniter's ``R`` (random) and ``H`` (hashed) mean something else, or nothing, to Node.
_NOT_PORTABLE = re.compile(r"(?<![A-Za-z])[HR](?![A-Za-z])", re.IGNORECASE)


def zone_named(name: str, *, what: str) -> ZoneInfo:
    """The zone called ``name``; :class:`JobDefinitionError` naming ``what`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise JobDefinitionError(f"{what} {name!r} is not a known timezone") from None


def validate_pattern(pattern: str, *, owner: str, tz: str | None = None) -> None:
    """Check a cron pattern the way BullMQ will evaluate it, on Python and on Node.

    A 6-field pattern has seconds first, as Node's cron-parser reads it.
    """
    if not isinstance(pattern, str):
        raise JobDefinitionError(f"{owner}.CRON_SCHEDULE must be a string, got {pattern!r}")
    fields = pattern.split()
    if len(fields) not in (5, 6):
        raise JobDefinitionError(
            f"{owner}.CRON_SCHEDULE {pattern!r} has {len(fields)} fields: "
            "it needs 5, or 6 with seconds first"
        )
    if _NOT_PORTABLE.search(pattern):
        raise JobDefinitionError(
            f"{owner}.CRON_SCHEDULE {pattern!r} uses H or R, which Node's cron-parser "
            "reads differently"
        )
    zone = zone_named(tz or "UTC", what=f"{owner}.CRON_TZ")
    try:
        next_fire_times(pattern, zone, 1)
    except Exception as exc:
        raise JobDefinitionError(f"{owner}.CRON_SCHEDULE {pattern!r} is invalid: {exc}") from None


#: A zero UTC offset, for comparing offsets that zoneinfo may give as None.
ZERO = timedelta(0)
_HOUR = timedelta(hours=1)


def _repeated(wall: datetime, zone: ZoneInfo) -> timedelta:
    """How much later the second pass of a repeated wall time comes (ZERO if not repeated).

    A repeated wall time has the larger offset first (fold=0); in a DST gap it is
    the other way round.
    """
    return max(
        ZERO,
        (wall.replace(tzinfo=zone, fold=0).utcoffset() or ZERO)
        - (wall.replace(tzinfo=zone, fold=1).utcoffset() or ZERO),
    )


def _repeat_begins(local: datetime, zone: ZoneInfo) -> datetime:
    """The first wall time (to the second) of the repeated hour that ``local`` lies in."""
    low, high = 0, 3600  # seconds before ``local``: repeated at ``low``, not at ``high``
    while high - low > 1:
        middle = (low + high) // 2
        if _repeated(local - timedelta(seconds=middle), zone):
            low = middle
        else:
            high = middle
    return local - timedelta(seconds=low)


def next_fire_times(
    pattern: str, tz: ZoneInfo | str, count: int = 3, *, after: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (default now), in ``tz``.

    croniter 2.0.7 (pinned by bullmq) fires twice or an hour off on DST days
    when given aware datetimes, so wall-clock times are iterated instead and
    resolved as Node's cron-parser 5 does: a time skipped by DST runs when the
    clock lands after the gap; a repeated time runs once, at its first
    occurrence (at the second when ``after`` lies between them), unless the
    pattern runs every hour, which then runs in both.
    """
    from croniter import croniter

    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    start = datetime.now(zone) if after is None else after.astimezone(zone)
    local = start.replace(tzinfo=None)
    it = croniter(pattern, local, second_at_beginning=True)
    every_hour = it.expanded[1] == ["*"]
    found: list[datetime] = []
    pending: list[datetime] = []  # candidates, in time order, not yet known to be next
    last = start.timestamp()
    ahead = (start.utcoffset() or ZERO) - (local.replace(tzinfo=zone, fold=1).utcoffset() or ZERO)
    if every_hour and ahead == _HOUR:  # Node repeats whole hours only, not Lord Howe's half
        # In the first pass of a repeated hour, the second pass is still ahead, also at
        # the wall times before start's.
        early = croniter(
            pattern, _repeat_begins(local, zone) - timedelta(seconds=1), second_at_beginning=True
        )
        while len(pending) < count:
            wall = early.get_next(datetime)
            if wall > local:
                break
            if _repeated(wall, zone):
                pending.append(wall.replace(tzinfo=zone, fold=1))
    for _ in range(count * 10 + 100):  # skipped DST times only drop a few
        wall = it.get_next(datetime)
        first = wall.replace(tzinfo=zone, fold=0)
        if not _repeated(wall, zone):  # a DST gap is handled by fold=0 alone
            pending.append(first)
        elif every_hour:
            pending += [first, wall.replace(tzinfo=zone, fold=1)]
        elif first.timestamp() <= start.timestamp():  # first pass over, the second comes
            pending.append(wall.replace(tzinfo=zone, fold=1))
        else:
            pending.append(first)
        pending.sort(key=datetime.timestamp)
        # Outside DST gaps (where ``pending`` holds ``first`` alone) every later wall
        # time resolves to at least ``first``, so what precedes it is final.
        while pending and pending[0].timestamp() <= first.timestamp():
            when = pending.pop(0)
            if when.timestamp() > last:
                found.append(when)
                last = when.timestamp()
                if len(found) == count:
                    return found
    return found
