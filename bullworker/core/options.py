"""BullMQ job options: which ones ``queue_job`` takes and what their values must be.

Checked before anything reaches Redis, because BullMQ's Lua scripts do not
check them: a backoff delay of ``"x"`` or ``attempts=True`` makes the script
that finishes the job raise, and the job is then neither failed nor retried,
so it is never recorded either.
"""

from __future__ import annotations

import re
from typing import Any

from bullworker.core.errors import PayloadError
from bullworker.core.jobs import check_json

#: The largest priority BullMQ accepts (2^21).
MAX_PRIORITY = 2_097_152
ALLOWED = frozenset(
    {
        "delay", "priority", "attempts", "backoff", "jobId", "lifo", "timestamp",
        "removeOnComplete", "removeOnFail", "stackTraceLimit", "keepLogs", "deduplication",
        "traceparent", "tracestate", "sizeLimit", "retryOf",
    }
)  # fmt: skip
_INT_LIKE = re.compile(r"^-?\d+$")


def _is_int(value: Any, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Validate BullMQ job options as Node does, and their types, before they reach Redis."""
    unknown = set(opts) - ALLOWED
    if "repeat" in unknown:
        raise PayloadError("'repeat' is not supported by queue_job: declare CRON_SCHEDULE instead")
    if unknown:
        raise PayloadError(f"unknown job option(s): {', '.join(sorted(unknown))}")
    for name in ("delay", "timestamp", "stackTraceLimit", "keepLogs"):
        if opts.get(name) is not None and not _is_int(opts[name]):
            raise PayloadError(f"{name} must be a non-negative integer, got {opts[name]!r}")
    for name in ("sizeLimit", "attempts"):
        if opts.get(name) is not None and not _is_int(opts[name], 1):
            raise PayloadError(f"{name} must be a positive integer, got {opts[name]!r}")
    priority = opts.get("priority")
    if priority is not None and not (_is_int(priority) and priority <= MAX_PRIORITY):
        raise PayloadError(f"priority must be an integer in 0..{MAX_PRIORITY}, got {priority!r}")
    if opts.get("lifo") is not None and not isinstance(opts["lifo"], bool):
        raise PayloadError(f"lifo must be true or false, got {opts['lifo']!r}")
    _check_job_id(opts.get("jobId"))
    _check_backoff(opts.get("backoff"))
    for name in ("removeOnComplete", "removeOnFail"):
        _check_keep(name, opts.get(name))
    _check_deduplication(opts.get("deduplication"))
    for name in ("traceparent", "tracestate"):
        if opts.get(name) is not None and not isinstance(opts[name], str):
            raise PayloadError(f"{name} must be a string, got {opts[name]!r}")
    retry_of = opts.get("retryOf")
    if retry_of is not None and (not isinstance(retry_of, str) or not retry_of):
        raise PayloadError(f"retryOf must be a non-empty string (a _jobs id), got {retry_of!r}")
    check_json(opts, what="job options")
    return opts


def check_retry_options(opts: Any) -> None:
    """The options BullMQ computes with when a run fails (a consumer's check of any producer's job)."""
    if not isinstance(opts, dict):
        raise PayloadError(f"job options must be an object, got {opts!r}")
    if opts.get("attempts") is not None and not _is_int(opts["attempts"]):
        raise PayloadError(f"attempts must be a non-negative integer, got {opts['attempts']!r}")
    _check_backoff(opts.get("backoff"))


def _check_job_id(job_id: Any) -> None:
    if job_id is None:
        return
    if not isinstance(job_id, str) or not job_id:
        raise PayloadError("jobId must be a non-empty string")
    if _INT_LIKE.match(job_id):
        raise PayloadError(f"jobId {job_id!r} cannot be an integer: it collides with generated ids")
    if ":" in job_id:
        raise PayloadError(f"jobId {job_id!r} cannot contain ':'")


def _check_backoff(backoff: Any) -> None:
    if backoff is None or _is_int(backoff):
        return
    if not isinstance(backoff, dict) or not isinstance(backoff.get("type"), str):
        raise PayloadError(
            f"backoff must be milliseconds or {{'type': ..., 'delay': ...}}, got {backoff!r}"
        )
    if backoff.get("delay") is not None and not _is_int(backoff["delay"]):
        raise PayloadError(
            f"backoff.delay must be a non-negative integer, got {backoff['delay']!r}"
        )
    jitter = backoff.get("jitter")
    if jitter is not None and not (_is_number(jitter) and 0 <= jitter <= 1):
        raise PayloadError(f"backoff.jitter must be a number between 0 and 1, got {jitter!r}")


def _check_keep(name: str, value: Any) -> None:
    """``removeOnComplete``/``removeOnFail``: true/false, a count to keep, or {age, count}."""
    if value is None or isinstance(value, bool) or _is_int(value):
        return
    keys = {"age", "count", "limit"}
    if isinstance(value, dict) and set(value) <= keys and all(map(_is_int, value.values())):
        return
    raise PayloadError(
        f"{name} must be true, false, a number of jobs to keep or "
        f"{{'age': seconds, 'count': jobs}}, got {value!r}"
    )


def _check_deduplication(dedup: Any) -> None:
    if dedup is None:
        return
    if not isinstance(dedup, dict) or not isinstance(dedup.get("id"), str) or not dedup["id"]:
        raise PayloadError("deduplication needs an 'id' (a non-empty string)")
    if dedup.get("ttl") is not None and not _is_int(dedup["ttl"], 1):
        raise PayloadError(f"deduplication.ttl must be a positive integer, got {dedup['ttl']!r}")
    for flag in ("extend", "replace"):
        if dedup.get(flag) is not None and not isinstance(dedup[flag], bool):
            raise PayloadError(f"deduplication.{flag} must be true or false")
