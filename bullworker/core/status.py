"""How a finished job ended: ``completed``, ``failed`` or ``cancelled``.

``completed`` and ``failed`` are BullMQ's states and sets of finished jobs
(`bullworker.core.keys.FINISHED_SETS`). ``cancelled`` is bullworker's: BullMQ
has no such state, so a cancelled job that ran is ``failed`` in Redis with the
reason ``"JobCancelled: <reason>"`` (`CANCELLED_PREFIX`). All three are values of
the ``status`` column of ``_jobs``.
"""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal["completed", "failed", "cancelled"]

#: Every `Status`, in this order.
STATUSES: tuple[Status, ...] = get_args(Status)

#: How the failed reason of a cancelled job starts (``"JobCancelled: <reason>"``).
CANCELLED_PREFIX = "JobCancelled:"


def failed_status(reason: str | None) -> Status:
    """The status of a job that BullMQ failed with ``reason``: ``cancelled`` or ``failed``."""
    return "cancelled" if (reason or "").startswith(CANCELLED_PREFIX) else "failed"
