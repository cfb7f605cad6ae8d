"""Every Redis key name bullworker itself owns, in one place.

BullMQ's own keys (``<prefix>:<queue>:wait``, ``:completed``, ``:<id>`` ...) are
built by bullmq; the helpers here that name them exist so the recorder and the
CLI never spell a BullMQ key by hand elsewhere.
"""

from __future__ import annotations

from bullworker.core.status import STATUSES, Status

#: Namespace for keys that belong to bullworker rather than to BullMQ.
OWN_NAMESPACE = "bw"

#: Prefix of job-scheduler ids created by bullworker (cron). Schedulers without
#: it were created by someone else and are never touched.
SCHEDULER_ID_PREFIX = "bw:cron:"


def leader_key(prefix: str, queue: str) -> str:
    """Leader lock of the recorder for one queue."""
    return f"{prefix}:{OWN_NAMESPACE}:leader:recorder:{queue}"


def leader_info_key(prefix: str, queue: str) -> str:
    """Hash describing the current recorder leader (host, pid, since)."""
    return f"{prefix}:{OWN_NAMESPACE}:leader-info:recorder:{queue}"


def scheduler_id(job_name: str) -> str:
    """Stable job-scheduler id for a cron job class."""
    return f"{SCHEDULER_ID_PREFIX}{job_name}"


def queue_key(prefix: str, queue: str, suffix: str) -> str:
    """A BullMQ key of a queue, e.g. ``queue_key("bull", "mail", "completed")``."""
    return f"{prefix}:{queue}:{suffix}"


def job_key(prefix: str, queue: str, job_id: str) -> str:
    """The hash BullMQ keeps for one job."""
    return f"{prefix}:{queue}:{job_id}"


#: Keys BullMQ may keep beside a job's hash (``<job key><suffix>``); the
#: recorder deletes them with the job.
JOB_SUBKEY_SUFFIXES = (":logs", ":dependencies", ":processed", ":failed", ":unsuccessful")

#: The sets of finished jobs, scored by ``finishedOn``: the recorder's truth.
FINISHED_SETS: tuple[Status, ...] = STATUSES

#: The stream of queue events; the recorder only uses it as a wake-up.
EVENTS_SUFFIX = "events"


def deduplication_key_prefix(prefix: str, queue: str) -> str:
    """``<prefix>:<queue>:de:`` + deduplication id holds the deduplicated job's id."""
    return f"{prefix}:{queue}:de:"
