"""How a finished job ended: ``completed`` or ``failed``.

The same two words are BullMQ's states and sets of finished jobs, the
``status`` column of ``_jobs`` and a hook's outcome.
"""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal["completed", "failed"]

#: Every `Status`, in this order.
STATUSES: tuple[Status, ...] = get_args(Status)
