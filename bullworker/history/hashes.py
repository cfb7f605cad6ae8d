"""BullMQ job hashes read as ``_jobs`` rows: what the recorder writes, and ``jobs show``.

Tolerant of malformed hashes (another producer's, or one written by hand):
a field that cannot be read becomes a default rather than an error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bullworker.core import keys
from bullworker.core.status import Status, failed_status
from bullworker.core.trace import TRACEPARENT, job_trace_context
from bullworker.history.store import JobRecord


def _ms(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _json(raw: str | None, default: Any = None) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def trace_id(opts: Any) -> str | None:
    """The trace id of a job's W3C trace context, if any.

    From a ``traceparent`` option, else from BullMQ's built-in telemetry context
    (``tm``/``telemetry.metadata``, as Node's ``bullmq-otel`` writes it).
    """
    traceparent = job_trace_context(opts).get("traceparent")
    match = TRACEPARENT.match(traceparent) if traceparent else None
    return match.group(1) if match else None


def attempts_of(raw: dict[str, str]) -> str:
    """The attempt count as BullMQ stores it (``atm``, or ``attemptsMade`` before 5.x)."""
    return raw.get("atm") or raw.get("attemptsMade") or "0"


def is_recorded(raw: dict[str, str]) -> bool:
    """Whether the recorder wrote this finished job's current run to ``_jobs`` (and keeps it in
    Redis for the keep window): its mark (`keys.RECORDED_FIELD`) names its ``finishedOn``."""
    finished = raw.get("finishedOn")
    return bool(finished) and raw.get(keys.RECORDED_FIELD, "").startswith(f"{finished}:")


def to_record(
    queue: str,
    job_id: str,
    status: Status,
    raw: dict[str, str],
    logs: list[str] | None = None,
    *,
    prefix: str = "bull",
) -> JobRecord:
    """A ``_jobs`` row for a finished job's hash (and its last log lines, read apart).

    ``prefix`` is the queues' key prefix (``BULL_PREFIX``): a child's ``parent`` is
    its parent's key without it, ``<queue>:<jobId>``.

    Tolerant of malformed hashes. No ``progress`` field means the job never reported any.
    A job failed with ``"JobCancelled: ..."`` is a ``cancelled`` row.
    """
    if status == "failed":
        status = failed_status(raw.get("failedReason"))
    opts = _json(raw.get("opts"), {})
    opts = opts if isinstance(opts, dict) else {}
    completed = _ms(raw.get("finishedOn")) or datetime.now(UTC)
    created = _ms(raw.get("timestamp")) or completed
    delay = opts.get("delay") if isinstance(opts.get("delay"), int) else 0
    if status == "completed":
        result = _json(raw.get("returnvalue"))
    else:
        stack = _json(raw.get("stacktrace"), [])
        result = {"reason": raw.get("failedReason", ""), "stack": stack}
    try:
        attempt = int(attempts_of(raw))
    except ValueError:
        attempt = 0
    return JobRecord(
        queue=queue,
        queue_id=job_id,
        attempt=attempt,
        name=raw.get("name") or "(unnamed)",
        data=_json(raw.get("data"), {}),
        status=status,
        result=result,
        created_at=created,
        should_execute_at=_ms(str(int(created.timestamp() * 1000) + (delay or 0))) or created,
        executed_at=_ms(raw.get("processedOn")),
        completed_at=completed,
        trace_id=trace_id(opts),
        retry_of=opts["retryOf"] if isinstance(opts.get("retryOf"), str) else None,
        progress=_json(raw.get("progress")),
        logs=logs or None,
        parent=keys.parent_ref(prefix, _json(raw.get("parent")), raw.get("parentKey")),
    )
