"""Cancelling a running job wherever it runs: the request, and the runner service that acts on it.

BullMQ 6.7 has no cross-process cancel: Node's ``worker.cancelJob(id)`` aborts
a job of its own process, and its experimental ``Relay`` is a generic pub/sub
with no topic a worker listens to. So bullworker defines its own request, in
two parts that anyone can write (``bullworker jobs cancel``, or a Node service:
docs/node-interop.md):

- a field of the hash `keys.cancel_requests_key` (``<prefix>:bw:cancel:<queue>``):
  the job id -> ``{"reason": ..., "timestamp": <the job's timestamp>, "at": <ms>}``
  as JSON, the hash expiring `REQUEST_TTL` seconds after its newest request.
  It is the durable part: a runner that starts, reconnects or takes the job
  later finds it;
- a message on the channel `keys.cancel_channel` (``<prefix>:bw:cancel``):
  ``{"queue": ..., "id": ..., "reason": ..., "timestamp": ...}`` as JSON, so
  that the runners connected now act at once.

``timestamp`` (BullMQ's creation time of the job, ms) is optional; with it the
request applies only to that job, not to a later job that reuses its id.

Each runner's `CancelService` subscribes to the channel on a connection of its
own, and reads the hashes of its queues when it (re)subscribes and every
`RESYNC_INTERVAL` seconds: the requests pending for its queues live in memory,
so a job that starts checks them without a Redis call. A request for a job
running here interrupts it (`Runner.cancel_running`); a job that starts later
fails before its handler runs. Either way the job fails at once, without
retries, with ``"JobCancelled: <reason>"``, and the runner that ran it deletes
the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from bullworker.core import keys
from bullworker.core.status import CANCELLED_PREFIX
from bullworker.core.tasks import cancel_and_wait, within
from bullworker.runtime.context import JobContext
from bullworker.transport.connection import redis_client

if TYPE_CHECKING:
    from bullworker.runtime.runner import Runner

log = logging.getLogger("bullworker.runner")

#: Seconds a request waits in its hash for the job (from the newest request of the queue).
REQUEST_TTL = 3600
#: Seconds between two reads of the hashes (they are also read on every (re)subscribe).
RESYNC_INTERVAL = 30.0
#: Longest pause between two tries to subscribe again after Redis went away.
_RETRY_CAP = 5.0

#: Deletes a request if it is the one of this job: KEYS: the hash. ARGV: job id, its
#: timestamp ("" for whichever request).
_WITHDRAW = """
local raw = redis.call("HGET", KEYS[1], ARGV[1])
if not raw then return 0 end
if ARGV[2] ~= "" then
  local ok, request = pcall(cjson.decode, raw)
  if ok and type(request) == "table" and type(request.timestamp) == "number"
    and request.timestamp ~= tonumber(ARGV[2]) then return 0 end
end
return redis.call("HDEL", KEYS[1], ARGV[1])
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A request to cancel the job ``queue:id`` (of BullMQ creation time ``timestamp``)."""

    queue: str
    id: str
    reason: str
    timestamp: int | None = None
    #: When it was asked (epoch ms), None if the sender did not say.
    at: int | None = None

    def message(self) -> str:
        """The channel's message."""
        return json.dumps(
            {"queue": self.queue, "id": self.id, "reason": self.reason, "timestamp": self.timestamp}
        )

    def field(self) -> str:
        """The hash's value."""
        return json.dumps({"reason": self.reason, "timestamp": self.timestamp, "at": self.at})

    def applies_to(self, job: JobContext) -> bool:
        """Whether it is for this run's job (not a later job with the same id)."""
        if job.id != self.id or job.queue != self.queue:
            return False
        return self.timestamp is None or self.timestamp == round(job.queued_at.timestamp() * 1000)

    def expired(self, now_ms: int) -> bool:
        return self.at is not None and now_ms - self.at > REQUEST_TTL * 1000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def parse_request(
    raw: Any, *, queue: str | None = None, job_id: str | None = None
) -> CancelRequest | None:
    """A request from a message (``queue`` and ``id`` in it) or a hash field (given); None
    when it cannot be read."""
    try:
        fields = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(fields, dict):
        return None
    queue = queue if queue is not None else fields.get("queue")
    job_id = job_id if job_id is not None else fields.get("id")
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        job_id = str(job_id)
    if not isinstance(queue, str) or not isinstance(job_id, str) or not queue or not job_id:
        return None
    reason = fields.get("reason")
    return CancelRequest(
        queue=queue,
        id=job_id,
        reason=str(reason) if reason not in (None, "") else "cancelled",
        timestamp=_int(fields.get("timestamp")),
        at=_int(fields.get("at")),
    )


async def send_cancel_request(client: aioredis.Redis, prefix: str, request: CancelRequest) -> int:
    """Store ``request``, then announce it; returns how many runners (subscribers of the
    channel) got the announcement. (Redis Cluster refuses PUBLISH in a transaction; a
    request stored but not announced is found by the runners' next read of the hashes.)"""
    hash_key = keys.cancel_requests_key(prefix, request.queue)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(hash_key, request.id, request.field())
        pipe.expire(hash_key, REQUEST_TTL)
        await pipe.execute()
    return int(await client.publish(keys.cancel_channel(prefix), request.message()))


async def withdraw_cancel_request(
    client: aioredis.Redis, prefix: str, queue: str, job_id: str, timestamp: int | None = None
) -> bool:
    """Delete the request for ``queue:job_id`` (only the one for ``timestamp``, if given)."""
    key = keys.cancel_requests_key(prefix, queue)
    args = [job_id, "" if timestamp is None else str(timestamp)]
    return bool(await client.eval(_WITHDRAW, 1, key, *args))


class CancelService:
    """A runner's ear for cancel requests: subscribed, reconnecting, never blocking a job."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.config = runner.config
        self.prefix = runner.config.bull_prefix
        #: The requests pending for this runner's queues, by (queue, job id).
        self.pending: dict[tuple[str, str], CancelRequest] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self._cleanups: set[asyncio.Future[Any]] = set()
        #: Set once the hashes were read: until then a job waits for it before it starts.
        self._synced = asyncio.Event()
        self._stopped = False

    # --- what the runner asks ---------------------------------------------------

    def requested(self, job: JobContext) -> CancelRequest | None:
        """The pending request for ``job``, if any (a dictionary look-up)."""
        request = self.pending.get((job.queue, job.id))
        return request if request is not None and request.applies_to(job) else None

    async def check(self, job: JobContext) -> None:
        """Before a handler runs: a job cancelled before it started fails now.

        The context is marked cancelled, which interrupts this task at its next await,
        here: dispatch then fails the job with ``JobCancelled``, without retries.
        """
        if not self._synced.is_set() and not self._stopped:  # the runner is starting
            with contextlib.suppress(TimeoutError):
                await within(self._synced.wait(), self.config.redis_timeout)
        request = self.requested(job)
        if request is None:
            return
        log.info(
            "job %s id=%s queue=%s: cancelled before it started (%s)",
            job.name, job.id, job.queue, request.reason,
        )  # fmt: skip
        job.request_cancel(request.reason)
        await asyncio.sleep(0)  # the cancel scheduled above lands here
        job.raise_if_cancelled()  # without a task to interrupt (not a runner's job)

    # --- the service --------------------------------------------------------------

    async def start(self) -> None:
        self._stopped = False
        for queue, worker in self.runner.workers.items():
            worker.on("completed", functools.partial(self._finished, queue))
            worker.on("failed", functools.partial(self._failed, queue))
        self._client = redis_client(self.config.redis_settings("bull"))
        self._task = asyncio.create_task(self._listen(), name="bullworker-cancel")

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        cleanups, self._cleanups = self._cleanups, set()
        if cleanups:
            await asyncio.wait(cleanups, timeout=self.config.redis_timeout)
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await within(client.aclose(), self.config.redis_timeout)

    async def _listen(self) -> None:
        """Subscribe, read the hashes, act on messages; after an outage, again."""
        pause = 0.0
        while True:
            client = redis_client(self.config.redis_settings("bull"))
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(keys.cancel_channel(self.prefix))
                # The hashes are read once the subscription is confirmed (nothing sent
                # since is missed), on every confirmation after a reconnect, and regularly.
                resync_at = time.monotonic() + RESYNC_INTERVAL
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None:
                        pass
                    elif message["type"] == "subscribe":  # the first time, and on a reconnect
                        resync_at = 0.0
                    elif message["type"] == "message":
                        self._received(message["data"])
                    if time.monotonic() >= resync_at:
                        await self._resync(client)
                        resync_at = time.monotonic() + RESYNC_INTERVAL
                        if pause:
                            log.info("cancel requests: listening again")
                            pause = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not pause:
                    log.warning(
                        "cancel requests: lost Redis (%s: %s); subscribing again",
                        type(exc).__name__, exc,
                    )  # fmt: skip
                pause = min(max(0.5, pause * 2), _RETRY_CAP)
                await asyncio.sleep(pause)
            finally:
                with contextlib.suppress(Exception):
                    await within(pubsub.aclose(), self.config.redis_timeout)
                with contextlib.suppress(Exception):
                    await within(client.aclose(), self.config.redis_timeout)

    def _received(self, data: Any) -> None:
        request = parse_request(data)
        if request is None:
            log.warning("cancel requests: ignored a message that is not a request: %.200r", data)
            return
        if request.queue not in self.runner.queues:
            return
        self.pending[(request.queue, request.id)] = request
        self._apply(request)

    async def _resync(self, client: aioredis.Redis) -> None:
        """Replace the pending requests by those in the hashes; drop expired ones."""
        queues = list(self.runner.queues)
        async with client.pipeline(transaction=False) as pipe:
            for queue in queues:
                pipe.hgetall(keys.cancel_requests_key(self.prefix, queue))
            found = await pipe.execute()
        now = _now_ms()
        pending: dict[tuple[str, str], CancelRequest] = {}
        for queue, fields in zip(queues, found, strict=True):
            for job_id, raw in fields.items():
                request = parse_request(raw, queue=queue, job_id=str(job_id))
                if request is None or request.expired(now):
                    await client.hdel(keys.cancel_requests_key(self.prefix, queue), str(job_id))
                    continue
                pending[(queue, request.id)] = request
        self.pending = pending
        self._synced.set()
        for request in pending.values():
            self._apply(request)

    def _apply(self, request: CancelRequest) -> None:
        """Interrupt the job of ``request`` if it runs here (and is the job it is for)."""
        dispatcher = self.runner.dispatchers.get(request.queue)
        job = dispatcher.running.get(request.id) if dispatcher is not None else None
        if job is None or job.cancelled or not request.applies_to(job):
            return
        if self.runner.cancel_running(request.queue, request.id, request.reason):
            log.info(
                "job %s id=%s queue=%s: cancel requested (%s)",
                job.name, job.id, job.queue, request.reason,
            )  # fmt: skip

    # --- forgetting requests that were done ----------------------------------------

    def _finished(self, queue: str, job: Any, *_: Any) -> None:
        self._forget(queue, job)

    def _failed(self, queue: str, job: Any, *_: Any) -> None:
        reason = str(getattr(job, "failedReason", "") or "")
        if getattr(job, "finishedOn", None) or reason.startswith(CANCELLED_PREFIX):
            self._forget(queue, job)  # failed for good: no later run to cancel

    def _forget(self, queue: str, job: Any) -> None:
        """A job with a request ended: delete the request (never raises: a worker event)."""
        try:
            key = (queue, str(job.id))
            request = self.pending.get(key)
            if request is None or request.timestamp not in (None, _int(job.timestamp)):
                return  # none, or for another job with this id
            del self.pending[key]
            client = self._client
            if client is None:
                return
            withdraw = withdraw_cancel_request(
                client, self.prefix, queue, request.id, request.timestamp
            )
            task = asyncio.ensure_future(withdraw)
            self._cleanups.add(task)
            task.add_done_callback(self._cleaned)
        except Exception:
            log.exception("cancel requests: could not forget the request of job %s", job)

    def _cleaned(self, task: asyncio.Future[Any]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("cancel requests: could not delete a done request: %s", task.exception())
