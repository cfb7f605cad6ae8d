"""Fire times across DST changes: the scheduler's, as Node computes them, and doctor's (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bullworker.core.cron import next_fire_times
from bullworker.ops.doctor import cron_summary
from bullworker.ops.inspect import iso

# Expected values were printed by Node's cron-parser 5.10.3 (BullMQ's), ``after`` lying in
# the first or second pass of the repeated hour.
NODE_FOLD_CASES = [
    ("0 * * * *", "Europe/Berlin", "2025-10-26T00:00:00Z", ["01:00", "02:00", "03:00"]),
    ("0 * * * *", "Europe/Berlin", "2025-10-26T00:30:00Z", ["01:00", "02:00", "03:00"]),
    ("*/30 * * * *", "Europe/Berlin", "2025-10-26T00:30:00Z", ["01:00", "01:30", "02:00"]),
    ("0 30 2 * * *", "Europe/Berlin", "2025-10-26T00:00:00Z", ["00:30"]),
    ("0 30 2 * * *", "Europe/Berlin", "2025-10-26T01:00:00Z", ["01:30"]),
    ("0 * * * *", "America/New_York", "2025-11-02T05:30:00Z", ["06:00", "07:00", "08:00"]),
]


@pytest.mark.parametrize(("pattern", "tz", "after", "expected"), NODE_FOLD_CASES)
def test_fire_times_from_inside_a_repeated_hour_agree_with_node(
    pattern: str, tz: str, after: str, expected: list[str]
) -> None:
    runs = next_fire_times(pattern, tz, len(expected), after=datetime.fromisoformat(after))
    assert [t.astimezone(UTC).strftime("%H:%M") for t in runs] == expected


# (pattern, zone, a moment before the change, how many runs to follow)
DST_CHANGES = [
    ("0 * * * *", "Europe/Berlin", "2025-03-30T00:30:00Z", 4),  # 02:00 skipped
    ("0 * * * *", "Europe/Berlin", "2025-10-25T23:30:00Z", 4),  # 02:00 twice
    ("30 2 * * *", "Europe/Berlin", "2025-03-29T12:00:00Z", 2),
    ("30 2 * * *", "Europe/Berlin", "2025-10-25T12:00:00Z", 2),
    ("*/20 * * * *", "Europe/Berlin", "2025-10-25T23:50:00Z", 8),
    ("0 * * * *", "America/New_York", "2025-03-09T05:30:00Z", 4),  # 02:00 skipped
    ("0 * * * *", "America/New_York", "2025-11-02T04:30:00Z", 4),  # 01:00 twice
    ("30 1 * * *", "America/New_York", "2025-11-01T12:00:00Z", 2),
]


@pytest.mark.parametrize(("pattern", "tz", "before", "count"), DST_CHANGES)
def test_doctor_shows_the_schedulers_next_run(
    pattern: str, tz: str, before: str, count: int
) -> None:
    """Doctor, asked one run after another, shows the scheduler's runs, one by one."""
    after = datetime.fromisoformat(before)
    shown = []
    for _ in range(count):
        [expected] = next_fire_times(pattern, tz, 1, after=after)
        assert (
            cron_summary(pattern, tz, after=after) == f"cron {pattern!r} {tz}, next {iso(expected)}"
        )
        shown.append(expected)
        after = expected
    assert shown == next_fire_times(pattern, tz, count, after=datetime.fromisoformat(before))


@pytest.mark.parametrize(
    ("tz", "before", "expected"),
    [
        (
            "Europe/Berlin",
            "2025-10-25T23:30:00Z",  # 01:30 CEST; at 03:00 CEST the clock goes back to 02:00
            ["2025-10-26T00:00:00.000Z", "2025-10-26T01:00:00.000Z", "2025-10-26T02:00:00.000Z"],
        ),
        (
            "America/New_York",
            "2025-11-02T04:30:00Z",  # 00:30 EDT; at 02:00 EDT the clock goes back to 01:00
            ["2025-11-02T05:00:00.000Z", "2025-11-02T06:00:00.000Z", "2025-11-02T07:00:00.000Z"],
        ),
    ],
)
def test_doctor_shows_both_runs_of_a_repeated_hour(
    tz: str, before: str, expected: list[str]
) -> None:
    after = datetime.fromisoformat(before)
    shown = []
    for _ in expected:
        text = cron_summary("0 * * * *", tz, after=after)
        shown.append(text.rpartition(", next ")[2])
        after = datetime.fromisoformat(shown[-1])
    assert shown == expected


def test_doctor_shows_none_for_an_unknown_zone() -> None:
    assert cron_summary("0 3 * * *", "Mars/Olympus") == "cron '0 3 * * *' Mars/Olympus, next None"
