"""Every Redis key name bullworker itself owns, in one place.

BullMQ's own keys (``<prefix>:<queue>:wait``, ``:completed``, ``:<id>`` ...) are
built by bullmq; the helpers here that name them exist so the recorder and the
CLI never spell a BullMQ key by hand elsewhere.
"""

from __future__ import annotations

from bullworker.core.status import Status

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


def lost_key(prefix: str, queue: str) -> str:
    """Hash counting the finished jobs of ``queue`` that left Redis before they were recorded
    (``removeOnComplete``/``removeOnFail`` of another producer): ``completed``, ``failed``, and
    the last one's ``lastJob``, ``lastStatus`` and ``lastAt`` (ms). Written by the recorder."""
    return f"{prefix}:{OWN_NAMESPACE}:lost:{queue}"


def recorder_cursor_key(prefix: str, queue: str) -> str:
    """The id of the last entry of the queue's event stream the recorder has read, so that a
    new leader goes on from there."""
    return f"{prefix}:{OWN_NAMESPACE}:recorder-cursor:{queue}"


def cancel_channel(prefix: str) -> str:
    """Pub/sub channel of cancel requests for running jobs, every queue (docs/node-interop.md)."""
    return f"{prefix}:{OWN_NAMESPACE}:cancel"


def cancel_requests_key(prefix: str, queue: str) -> str:
    """Hash of one queue's pending cancel requests: job id -> request (JSON), with a TTL."""
    return f"{prefix}:{OWN_NAMESPACE}:cancel:{queue}"


def scheduler_id(job_name: str) -> str:
    """Stable job-scheduler id for a cron job class."""
    return f"{SCHEDULER_ID_PREFIX}{job_name}"


def queue_key(prefix: str, queue: str, suffix: str) -> str:
    """A BullMQ key of a queue, e.g. ``queue_key("bull", "mail", "completed")``."""
    return f"{prefix}:{queue}:{suffix}"


def qualified_name(prefix: str, queue: str) -> str:
    """``<prefix>:<queue>``, BullMQ's qualified name of a queue (a parent's ``queueKey``)."""
    return f"{prefix}:{queue}"


def job_key(prefix: str, queue: str, job_id: str) -> str:
    """The hash BullMQ keeps for one job."""
    return f"{prefix}:{queue}:{job_id}"


def job_logs_key(prefix: str, queue: str, job_id: str) -> str:
    """The list of a job's log lines (``job.log``), oldest first."""
    return job_key(prefix, queue, job_id) + LOGS_SUFFIX


def job_lock_key(prefix: str, queue: str, job_id: str) -> str:
    """The lock BullMQ holds on a running job (its worker's token)."""
    return job_key(prefix, queue, job_id) + ":lock"


#: Suffix of a job's log list (the recorder's Lua scripts spell it too).
LOGS_SUFFIX = ":logs"

#: Keys BullMQ may keep beside a job's hash (``<job key><suffix>``); the
#: recorder deletes them with the job.
JOB_SUBKEY_SUFFIXES = (LOGS_SUFFIX, ":dependencies", ":processed", ":failed", ":unsuccessful")

#: The sets of finished jobs, scored by ``finishedOn``: the recorder's truth. (A
#: cancelled job that ran is in ``failed``; see `bullworker.core.status`.)
FINISHED_SETS: tuple[Status, ...] = ("completed", "failed")

#: The stream of queue events: the recorder reads which jobs finished there.
EVENTS_SUFFIX = "events"

#: Field the recorder sets in a job's hash once the job is recorded and kept in Redis:
#: ``<finishedOn>:<attempts>:<log mark>`` of the run it recorded. BullMQ and Node ignore it; a
#: retried job that finishes again has another ``finishedOn``, so it is recorded again.
RECORDED_FIELD = "bwrec"


def deduplication_key_prefix(prefix: str, queue: str) -> str:
    """``<prefix>:<queue>:de:`` + deduplication id holds the deduplicated job's id."""
    return f"{prefix}:{queue}:de:"


# A parent's children in a flow, as BullMQ 6 keeps them beside the parent's hash
# (``<job key><suffix>``, each member a child's job key ``<prefix>:<queue>:<id>``).
#: Set of the children not finished yet (and of failed ones no failure option let go).
DEPENDENCIES_SUFFIX = ":dependencies"
#: Hash of the completed children: child key -> its result (JSON).
PROCESSED_SUFFIX = ":processed"
#: Hash of the failed children the parent runs without (``ignoreDependencyOnFailure``,
#: ``continueParentOnFailure``): child key -> failed reason.
IGNORED_SUFFIX = ":failed"
#: Sorted set of the failed children that failed the parent (``failParentOnFailure``).
UNSUCCESSFUL_SUFFIX = ":unsuccessful"


def hash_tag(key: str) -> str | None:
    """The hash tag Redis Cluster hashes ``key`` by: what lies between its first ``{`` and
    the first ``}`` after it, when that is not empty; None when the whole key is hashed."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def queue_hash_tag(prefix: str, queue: str) -> str | None:
    """The hash tag every key of ``queue`` shares (BullMQ's and bullworker's), or None.

    Either the prefix holds a whole tag (``{bull}``: all queues in one slot), or the
    prefix holds no ``{`` and the queue name a whole tag (``{mail}``: a slot per queue).
    A tag opened in the prefix and closed in the queue name would differ between
    ``<prefix>:<queue>:...`` and bullworker's ``<prefix>:bw:...:<queue>``: refused.
    """
    if "{" in prefix:
        return hash_tag(prefix)  # a tag not closed in the prefix would take in the queue name
    return hash_tag(queue)


def job_ref(prefix: str, key: str) -> str:
    """``<queue>:<id>`` of the job key ``<prefix>:<queue>:<id>``.

    The prefix may hold ``:``; a key of another prefix loses its own (queue names
    and job ids have no ``:``).
    """
    head = f"{prefix}:"
    if key.startswith(head):
        return key[len(head) :]
    parts = key.rsplit(":", 2)
    return f"{parts[-2]}:{parts[-1]}" if len(parts) == 3 else key


def parent_ref(prefix: str, parent: object, parent_key: object) -> str | None:
    """``<queue>:<id>`` of a child's parent, from the fields ``parent`` (``{id, queueKey}``,
    decoded) and ``parentKey`` of the child's hash; None for a job that is no child."""
    if isinstance(parent, dict) and parent.get("id") and isinstance(parent.get("queueKey"), str):
        return job_ref(prefix, f"{parent['queueKey']}:{parent['id']}")
    if isinstance(parent_key, str) and parent_key:
        return job_ref(prefix, parent_key)
    return None
