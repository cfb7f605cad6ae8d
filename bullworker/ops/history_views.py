"""What ``_jobs`` says over time, for the dashboard: throughput and failures grouped.

`throughput_series` counts the rows that finished in each bucket of a window
(the last hour by minutes, the last day by hours...), per queue and over every
queue, by how they ended; `failure_groups` groups the failures of a window by
job name and reason. Both read `bullworker.history.store.views`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bullworker.history.store import JobStore
from bullworker.history.store import views as store_views
from bullworker.history.store.views import FailureGroup
from bullworker.ops.inspect import iso

__all__ = ["FailureGroup", "Series", "failure_groups", "throughput_series"]

#: The windows the dashboard charts: name -> (length, bucket).
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "hour": (timedelta(hours=1), timedelta(minutes=1)),
    "day": (timedelta(days=1), timedelta(hours=1)),
}


@dataclass(frozen=True, slots=True)
class Series:
    """Rows finished per bucket, oldest bucket first, by how they ended."""

    start: datetime
    bucket: timedelta
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.completed) + sum(self.failed) + sum(self.cancelled)

    @property
    def failure_rate(self) -> list[float | None]:
        """Per bucket, failed / (completed + failed); None for a bucket without either."""
        return [
            None if done + bad == 0 else bad / (done + bad)
            for done, bad in zip(self.completed, self.failed, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": iso(self.start),
            "bucketSeconds": int(self.bucket.total_seconds()),
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


async def throughput_series(
    store: JobStore, window: str = "hour", *, now: datetime | None = None
) -> dict[str | None, Series]:
    """Per queue, and over every queue (key None), the rows finished in each bucket of the
    ``window`` (one of `WINDOWS`) that ends now. A queue with no row has no series."""
    length, bucket = WINDOWS[window]
    step = int(bucket.total_seconds())
    end = now or datetime.now(UTC)
    # Whole buckets: the last one holds now.
    last = int(end.timestamp()) // step * step
    count = int(length.total_seconds()) // step
    first = last - (count - 1) * step
    start = datetime.fromtimestamp(first, UTC)
    found = await store_views.throughput(store, start, step)
    series: dict[str | None, Series] = {}
    for queue, moment, status, rows in found:
        index = (moment - first) // step
        if not 0 <= index < count:
            continue
        for key in (queue, None):
            if key not in series:
                series[key] = Series(start, bucket, [0] * count, [0] * count, [0] * count)
            getattr(series[key], status)[index] += rows
    return series


async def failure_groups(
    store: JobStore, since: timedelta = timedelta(days=1), *, limit: int = 100
) -> list[FailureGroup]:
    """The failures (not cancels) of the last ``since``, grouped by job name and reason."""
    return await store_views.failure_groups(store, datetime.now(UTC) - since, limit)
