"""The consumer side: one bullmq Worker per queue, dispatching by ``job.name``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError

from bullworker.config.redis_settings import check_redis
from bullworker.config.settings import AppConfig
from bullworker.core.errors import DependencyError, QueueUnavailable
from bullworker.core.errors import JobFailed as JobFailed
from bullworker.core.hooks import JobHook, call_hooks
from bullworker.core.jobs import JobDefinition, JobRegistry
from bullworker.core.limits import RateLimit, queue_rate_limits
from bullworker.core.tasks import within
from bullworker.runtime.backoff import Backoffs
from bullworker.runtime.context import JobContext
from bullworker.runtime.dispatch import Dispatcher, JobFactory, call_handler
from bullworker.transport.bullmq_compat import require_bullmq
from bullworker.transport.bullmq_compat.node_versions import log_node_versions
from bullworker.transport.connection import bullmq_connection
from bullworker.transport.probe import check_reachable

log = logging.getLogger("bullworker.runner")

#: Milliseconds the worker's fetch loop waits after a connection error it could not retry.
RUN_RETRY_DELAY_MS = 1000
#: Seconds the start waits for the first recorder election, so its log line can tell
#: whether this process records (a later change of leader has lines of its own).
ELECTION_WAIT = 2.0


class RunnerService(Protocol):
    """Something the runner starts after its workers and stops before closing them (but
    the recording service: it records until the workers have closed, then stops)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _roles(roles: dict[str, str]) -> str:
    """``leader``, or per role the queues: ``leader of a, b; follower of c``."""
    explained = {
        "leader": "leader",
        "follower": "follower: another process records",
        "pending": "leader election pending",
    }
    kinds = set(roles.values())
    if len(kinds) == 1:
        return explained[kinds.pop()]
    by_role: dict[str, list[str]] = {}
    for queue, role in roles.items():
        by_role.setdefault(role, []).append(queue)
    of = {"leader": "leader of", "follower": "follower of", "pending": "election pending for"}
    return "; ".join(f"{of[role]} {', '.join(queues)}" for role, queues in by_role.items())


class Runner:
    """Consumes queues with one bullmq Worker each until stopped."""

    def __init__(
        self,
        *,
        config: AppConfig,
        registry: JobRegistry,
        factory: JobFactory,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        hooks: list[JobHook] | None = None,
        backoffs: Backoffs | None = None,
    ) -> None:
        self.config = config
        #: The app's custom backoff strategies (an unknown type fails the job, saying so).
        self.backoffs = backoffs or Backoffs()
        self.hooks: list[JobHook] = list(hooks or [])
        self.registry = registry
        self.factory = factory
        self.concurrency = concurrency or config.worker_concurrency
        self.queues = queues or config.consumed_queues or registry.queues(config.bull_queue)
        from bullworker.history.recording import RecordingService, recorded_queues

        #: The queues this runner competes to record: the consumed ones and RECORD_QUEUES.
        self.recorded_queues = recorded_queues(config, self.queues)
        self.services: list[RunnerService] = []
        #: Records finished jobs in ``_jobs`` (None with ``RECORD_JOBS=false``).
        self.recording: RecordingService | None = None
        if config.record_jobs:
            self.recording = RecordingService(config, self.recorded_queues)
            self.services.append(self.recording)
        from bullworker.runtime.cron import CronService

        self.services.append(CronService(config, registry, self.queues))
        from bullworker.runtime.cancel import CancelService

        #: Acts on cancel requests (``bullworker jobs cancel``) for the jobs of this runner;
        #: started first, so that the requests are read before the jobs they are for run.
        self.cancels = CancelService(self)
        self.services.insert(0, self.cancels)
        if config.loop_block_warning > 0:
            from bullworker.runtime.watchdog import LoopWatchdog

            self.services.append(LoopWatchdog(config.loop_block_warning))
        self.workers: dict[str, Any] = {}
        #: The rate limit of each consumed queue that has one (set at start).
        self.rate_limits: dict[str, RateLimit] = {}
        #: Each queue's processor: the jobs running now, for cancel requests.
        self.dispatchers: dict[str, Dispatcher] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._executor: ThreadPoolExecutor | None = None
        #: Thread pools given up because a sync handler overran its TIMEOUT in them.
        self.retired_pools = 0
        self._running = False
        self._started = False  # the start completed (and was logged)

    @property
    def running(self) -> bool:
        return self._running

    def check_dependencies(self) -> None:
        """Build every job and its validators once: a missing dependency fails at start,
        and the first job does not wait for its validator to be built."""
        problems = []
        for definition in self.registry:
            try:
                self.factory(definition.cls)
                definition.prepare()
            except DependencyError as exc:  # it names the job
                problems.append(str(exc))
            except Exception as exc:
                problems.append(f"{definition.name}: {type(exc).__name__}: {exc}")
        if problems:
            raise DependencyError("cannot build job(s): " + "; ".join(problems))

    async def recorded_children(self, parent: str) -> dict[str, str]:
        """The job names of the recorded children of ``parent`` (``<queue>:<id>``), by id:
        for ``children_values(JobClass)`` once the recorder removed a child from Redis."""
        if self.recording is None:
            return {}
        store = await self.recording.store()
        return {row.id: row.name for row in await store.children_of(parent)}

    def _worker_options(self, queue: str | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "prefix": self.config.bull_prefix,
            "concurrency": self.concurrency,
            "autorun": False,
            "lockDuration": self.config.worker_lock_duration,
            "stalledInterval": self.config.worker_stalled_interval,
            "maxStalledCount": self.config.worker_max_stalled_count,
            # After a connection error the fetch loop tries again this soon (bullmq: 15 s).
            "runRetryDelay": RUN_RETRY_DELAY_MS,
            # An idle worker blocks on one server for drainDelay (5 s); with Sentinel it
            # checks every second that this server is still the master.
            "drainDelay": 1 if self.config.redis_settings("bull").sentinel_host else 5,
            "settings": {"backoffStrategy": self.backoffs},
            "name": f"{socket.gethostname()}:{os.getpid()}",
        }
        limit = self.rate_limits.get(queue) if queue is not None else None
        if limit is not None:  # shared by every worker of the queue: one limiter key per queue
            opts["limiter"] = limit.limiter()
        return opts

    async def start(self) -> None:
        """Start one Worker per queue, then the services (recorder, cron...)."""
        if self._running:
            raise RuntimeError("runner is already running")
        require_bullmq()
        from bullworker.runtime.cron import use_repeat_strategy
        from bullworker.runtime.worker import BullWorker

        self.check_dependencies()
        limits = queue_rate_limits(self.registry, self.config.bull_queue, self.config.rate_limits)
        self.rate_limits = {q: limits[q] for q in self.queues if q in limits}
        unconsumed = {
            d.name for d in self.registry if d.queue(self.config.bull_queue) not in self.queues
        }
        if unconsumed:
            log.warning(
                "this runner does not consume the queues of: %s", ", ".join(sorted(unconsumed))
            )
        redis = self.config.redis_settings("bull")
        if redis.cluster:  # the queues of the job classes too, not only those of the config
            check_redis(self.config, "bull", self.config.bull_prefix, self.queues)
        await check_reachable(redis)  # a refused connection is said now, not after retries
        if any(not d.is_async for d in self.registry):
            self._executor = self._new_executor()
        self._running = True
        try:
            for queue in self.queues:
                connection = bullmq_connection(redis, master_check_interval=1.0)
                opts = {**self._worker_options(queue), "connection": connection}
                dispatcher = Dispatcher(self, queue, self.config.bull_prefix)
                worker = BullWorker(queue, dispatcher, opts)
                # croniter (pinned by bullmq) gets DST days wrong; compute next runs
                # by wall-clock time as Node's cron-parser does.
                use_repeat_strategy(worker)
                worker.on("error", functools.partial(self._on_error, queue))
                worker.on("stalled", functools.partial(self._on_stalled, queue))
                self.workers[queue] = worker
                self.dispatchers[queue] = dispatcher
                try:
                    await within(worker.load_server_version(), self.config.redis_timeout)
                except (TimeoutError, OSError) as exc:
                    raise QueueUnavailable(
                        f"Redis at {redis.describe()} did not answer within "
                        f"{self.config.redis_timeout:g} s ({type(exc).__name__})"
                    ) from None
                except RedisConnectionError as exc:  # refused credentials, no Sentinel master
                    raise QueueUnavailable(
                        f"Redis at {redis.describe()}: {type(exc).__name__}: {exc}"
                    ) from None
                self._tasks.append(asyncio.create_task(worker.run(), name=f"bullworker:{queue}"))
            for service in self.services:
                await service.start()
            roles: dict[str, str] = {}
            if self.recording is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(ELECTION_WAIT, self.config.redis_timeout)):
                        await self.recording.first_election()
                roles = self.recording.roles()
            started = self._describe(roles)
        except BaseException:
            await self.stop(grace=0)
            raise
        # A Node BullMQ 5.x sharing a queue, or one outside the tested range, is said now:
        # before the start line, so that a job queued on seeing it does not wait for this.
        await log_node_versions(
            self.workers, self.config.bull_prefix, log, self.config.redis_timeout
        )
        log.info("runner started: %s", started)
        log.debug("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
        self._started = True

    def _describe(self, roles: dict[str, str]) -> str:
        """What the start line says: version, queues, concurrency, jobs, recording."""
        from bullworker.core.version import __version__

        parts = [
            f"bullworker {__version__}",
            f"queues {', '.join(self.queues) or 'none'}",
            f"concurrency {self.concurrency}",
            f"jobs {', '.join(self.registry.names()) or 'none'}",
        ]
        if self.rate_limits:
            limits = ", ".join(f"{q} {limit}" for q, limit in self.rate_limits.items())
            parts.append(f"rate limits {limits}")
        if self.recording is None:
            parts.append("recording off (RECORD_JOBS=false)")
        elif not roles:
            parts.append("recording nothing")
        else:
            parts.append(f"recording to {self.recording.describe_store()} ({_roles(roles)})")
            only = [q for q in self.recorded_queues if q not in self.queues]
            if only:
                parts.append(f"record-only queues {', '.join(only)}")
        return "; ".join(parts)

    def _new_executor(self) -> ThreadPoolExecutor:
        """A thread for every job the workers may run at once."""
        return ThreadPoolExecutor(
            max_workers=self.concurrency * len(self.queues), thread_name_prefix="bullworker-job"
        )

    async def run_handler(
        self, definition: JobDefinition, instance: Any, data: Any, job: JobContext
    ) -> Any:
        """Run ``handle`` (async, or sync in a thread) within the class's TIMEOUT."""
        await self.cancels.check(job)  # cancelled before it started: fails here
        return await call_handler(
            definition, instance, data, job, self._executor, self._retire_executor
        )

    def cancel_running(self, queue: str, job_id: str, reason: str) -> bool:
        """Interrupt the job ``queue:job_id`` if it runs in this runner; False if it does not."""
        dispatcher = self.dispatchers.get(queue)
        return dispatcher is not None and dispatcher.cancel(job_id, reason)

    def _retire_executor(self, executor: ThreadPoolExecutor, name: str) -> None:
        """Give later jobs fresh threads: a thread cannot be stopped, and it holds its slot.

        Without this, sync handlers that overran their TIMEOUT would fill the pool
        and every later sync job would wait for a thread (and time out waiting).
        """
        if self._executor is not executor:
            return  # already retired by another timed-out job of this pool
        self._executor = self._new_executor()
        executor.shutdown(wait=False)  # its idle threads leave; running ones finish first
        self.retired_pools += 1
        log.warning(
            "%s overran its TIMEOUT; its thread cannot be stopped and runs on. "
            "Later jobs get a fresh thread pool (%d retired so far)",
            name, self.retired_pools,
        )  # fmt: skip

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking jobs, wait up to ``grace`` seconds for running ones, then force-close.

        Jobs cut off by the forced close stay active in Redis and come back
        through BullMQ's stalled-job check (at-least-once). The recorder goes on
        until the workers have closed, then records what finished meanwhile (within
        what is left of ``grace``) and only then gives up its leadership.
        """
        grace = self.config.shutdown_grace if grace is None else grace
        began = time.monotonic()
        if self._started:
            running = sum(worker.running_jobs for worker in self.workers.values())
            if running:
                log.info(
                    "stopping: waiting up to %g s for %d running job%s",
                    grace, running, "" if running == 1 else "s",
                )  # fmt: skip
            else:
                log.info("stopping: no job is running")
        for service in reversed(self.services):
            if service is self.recording:
                continue  # it records until the workers have closed (below)
            await self._stop_service(service)
        workers, self.workers = list(self.workers.items()), {}
        self.dispatchers = {}
        closing = {asyncio.ensure_future(w.close()): (q, w) for q, w in workers}
        if closing:
            _, pending = await asyncio.wait(closing, timeout=grace)
            for task in pending:
                queue, worker = closing[task]
                if worker.busy:  # not for a worker that never ran (a failed start)
                    log.warning(
                        "queue %s: jobs still running after %.1f s; force-closing", queue, grace
                    )
                await worker.close(force=True)
            await asyncio.gather(*closing, return_exceptions=True)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.recording is not None:
            if self._started:  # the jobs that finished meanwhile, within what is left of the grace
                await self.recording.finish(grace - (time.monotonic() - began))
            await self._stop_service(self.recording)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self._running:
            log.info("runner stopped")
        self._running = self._started = False

    async def _stop_service(self, service: RunnerService) -> None:
        try:
            await service.stop()
        except Exception:
            log.exception("stopping %s failed", type(service).__name__)

    def _on_error(self, queue: str, err: Any, job: Any = None) -> None:
        if job is not None:
            log.error("queue %s job %s id=%s: %s", queue, job.name, job.id, err)
        else:
            log.error("queue %s: %s", queue, err)

    def _on_stalled(self, queue: str, job_id: Any, *_: Any) -> None:
        log.warning("queue %s: job id=%s stalled and was put back to run again", queue, job_id)
        call_hooks(self.hooks, "job_stalled", queue, str(job_id))
