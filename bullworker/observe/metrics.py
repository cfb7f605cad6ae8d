"""Prometheus metrics of a runner: a hook that counts jobs, a service that serves them.

Needs ``prometheus_client`` (``pip install 'bullworker[metrics]'``); it is
imported only when metrics are used, so ``import bullworker`` stays fast.
``bullworker start --metrics-port P`` wires everything with
:func:`install_metrics`. Every name starts with ``bullworker_``:

- ``jobs_total`` (counter; queue, name, outcome ``completed``/``failed``/``cancelled``/``delayed``)
- ``job_duration_seconds`` (histogram; queue, name): how long the handler ran
- ``job_wait_seconds`` (histogram; queue, name): first runs only, start - due
  (due = queued + delay)
- ``jobs_in_progress`` (gauge; queue, name)
- ``job_retries_total`` (counter; queue, name): failed runs that will retry
- ``jobs_stalled_total`` (counter; queue)
- ``recorder_rows_written_total`` (counter; queue): rows this process wrote
- ``recorder_leader`` (gauge; queue): 1 while this process records the queue
- ``recorder_lag_seconds`` (gauge; queue): recorder leader only
- ``queue_jobs`` (gauge; queue, state): ``getJobCounts``, recorder leader only
- ``jobs_lost_total`` (counter; queue, status): finished jobs that left Redis before they
  were recorded (no ``_jobs`` row), as the recorders count them in Redis; recorder leader only
- ``event_loop_lag_seconds`` (gauge)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from bullworker.core.errors import JobCancelled
from bullworker.core.errors import MetricsError as MetricsError
from bullworker.core.hooks import JobHook, JobRun, Outcome
from bullworker.core.tasks import cancel_and_wait
from bullworker.history.backlog import LostJobs, read_lost
from bullworker.observe.health import HttpServer, LoopLagMonitor, Readiness, health_app
from bullworker.transport.connection import close_queue, open_queue
from bullworker.transport.deadline import bounded

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from bullworker.history.recording import RecordingService
    from bullworker.runtime.runner import Runner

log = logging.getLogger("bullworker.metrics")

#: Seconds; jobs range from milliseconds to long batch work.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def require_prometheus() -> None:
    """Raise :class:`MetricsError` with the install hint when prometheus_client is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MetricsError(
            "metrics need the prometheus_client package: pip install 'bullworker[metrics]'"
        ) from None


class MetricsHook(JobHook):
    """Counts, times and gauges every job run into ``registry`` (its own by default)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        require_prometheus()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("queue", "name")
        reg = self.registry
        self.jobs = Counter(
            "bullworker_jobs", "Job runs finished, by outcome.", [*labels, "outcome"], registry=reg
        )
        self.duration = Histogram(
            "bullworker_job_duration_seconds", "Time a job's handler ran.", labels,
            buckets=BUCKETS, registry=reg,
        )  # fmt: skip
        self.wait = Histogram(
            "bullworker_job_wait_seconds",
            "Time from when a job was due (queued, plus its delay) to its first run's start.",
            labels, buckets=BUCKETS, registry=reg,
        )  # fmt: skip
        self.in_progress = Gauge(
            "bullworker_jobs_in_progress", "Jobs running now in this process.", labels, registry=reg
        )
        self.retries = Counter(
            "bullworker_job_retries", "Failed runs that will be retried.", labels, registry=reg
        )
        self.stalls = Counter(
            "bullworker_jobs_stalled",
            "Jobs found stalled (their worker stopped renewing the lock).",
            ["queue"],
            registry=reg,
        )

    def job_started(self, run: JobRun) -> None:
        self.in_progress.labels(run.queue, run.name).inc()
        run.state["metrics.in_progress"] = True
        if run.attempt == 1 and run.queued_at_ms:
            delay = run.opts.get("delay")
            due = run.queued_at_ms + (delay if isinstance(delay, int) else 0)
            waited = max(0.0, (run.started_at_ms - due) / 1000)
            self.wait.labels(run.queue, run.name).observe(waited)

    def job_finished(
        self,
        run: JobRun,
        outcome: Outcome,
        error: BaseException | None,
        duration: float,
        *,
        will_retry: bool,
    ) -> None:
        if run.state.pop("metrics.in_progress", False):
            self.in_progress.labels(run.queue, run.name).dec()
        cancelled = outcome == "failed" and isinstance(error, JobCancelled)
        self.jobs.labels(run.queue, run.name, "cancelled" if cancelled else outcome).inc()
        self.duration.labels(run.queue, run.name).observe(duration)
        if will_retry:
            self.retries.labels(run.queue, run.name).inc()

    def job_stalled(self, queue: str, job_id: str) -> None:
        self.stalls.labels(queue).inc()


class _RunnerCollector:
    """Reads the service's snapshots and the recorders' counters at scrape time."""

    def __init__(self, service: MetricsService) -> None:
        self.service = service

    def describe(self) -> list[Metric]:
        return []  # registering must not call collect()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        service = self.service
        recording = service.recording
        rows = CounterMetricFamily(
            "bullworker_recorder_rows_written",
            "Rows this process wrote to _jobs.",
            labels=["queue"],
        )
        leader = GaugeMetricFamily(
            "bullworker_recorder_leader",
            "1 while this process records the queue.",
            labels=["queue"],
        )
        if recording is not None:
            for queue, recorder in list(recording.recorders.items()):
                rows.add_metric([queue], recorder.stats.rows_written)
                leader.add_metric([queue], 1.0 if service.reports(queue) else 0.0)
        lag = GaugeMetricFamily(
            "bullworker_recorder_lag_seconds",
            "Age of the oldest finished job not yet recorded (recorder leader only).",
            labels=["queue"],
        )
        depth = GaugeMetricFamily(
            "bullworker_queue_jobs",
            "Jobs in the queue by state, from getJobCounts (recorder leader only).",
            labels=["queue", "state"],
        )
        for queue in service.runner.recorded_queues or service.runner.queues:
            if not service.reports(queue):
                continue
            if queue in service.recorder_lag:
                lag.add_metric([queue], service.recorder_lag[queue])
            for state, count in sorted(service.queue_counts.get(queue, {}).items()):
                depth.add_metric([queue, state], count)
        lost = CounterMetricFamily(
            "bullworker_jobs_lost",
            "Finished jobs that left Redis before they were recorded in _jobs "
            "(removeOnComplete/removeOnFail of their producer); recorder leader only.",
            labels=["queue", "status"],
        )
        for queue, found in sorted(service.lost.items()):
            if service.reports(queue):
                lost.add_metric([queue, "completed"], found.completed)
                lost.add_metric([queue, "failed"], found.failed)
        loop = GaugeMetricFamily(
            "bullworker_event_loop_lag_seconds", "How late the event loop runs a periodic task."
        )
        loop.add_metric([], service.monitor.lag)
        yield from (rows, leader, lag, depth, lost, loop)


class MetricsService:
    """A runner service: serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``port``.

    Every ``refresh_interval`` seconds it reads the queue depths and the recorder
    lag of each queue this process records (the recorder's leader), so a pool of
    runners reports them once. Without recording (``RECORD_JOBS=false``) every
    process reports the depths.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        port: int,
        host: str = "0.0.0.0",
        hook: MetricsHook | None = None,
        refresh_interval: float = 5.0,
        max_loop_lag: float = 1.0,
        ping_timeout: float = 1.0,
    ) -> None:
        require_prometheus()
        self.runner = runner
        self.hook = hook if hook is not None else MetricsHook()
        self.registry = self.hook.registry
        self.refresh_interval = refresh_interval
        self.monitor = LoopLagMonitor()
        self.readiness = Readiness(
            runner, self.monitor, max_loop_lag=max_loop_lag, ping_timeout=ping_timeout
        )
        self.queue_counts: dict[str, dict[str, int]] = {}
        self.recorder_lag: dict[str, float] = {}
        #: Each recorded queue's lost jobs, as its recorder counted them in Redis.
        self.lost: dict[str, LostJobs] = {}
        self._queues: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._collector: _RunnerCollector | None = None
        from prometheus_client import make_wsgi_app

        app = health_app(make_wsgi_app(self.registry), self.readiness)
        self.server = HttpServer(app, host=host, port=port)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def recording(self) -> RecordingService | None:
        from bullworker.history.recording import RecordingService

        for service in self.runner.services:
            if isinstance(service, RecordingService):
                return service
        return None

    def reports(self, queue: str) -> bool:
        """Whether this process reports the queue-wide gauges of ``queue``."""
        recording = self.recording
        if recording is None:
            return True
        leader = recording.leaders.get(queue)
        return leader is not None and leader.is_leader

    async def start(self) -> None:
        await self.monitor.start()
        await self.readiness.start()
        if self._collector is None:
            self._collector = _RunnerCollector(self)
            self.registry.register(self._collector)
        try:
            self.server.start()
        except OSError as exc:
            await self.readiness.stop()
            await self.monitor.stop()
            where = f"{self.server.host}:{self.server.port}"
            raise MetricsError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        self._task = asyncio.create_task(self._refresh_loop(), name="bullworker-metrics")
        log.info("serving metrics on http://%s:%d/metrics", self.server.host, self.port)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await asyncio.to_thread(self.server.stop)
        await self.readiness.stop()
        await self.monitor.stop()
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            with contextlib.suppress(Exception):
                await close_queue(queue, self.runner.config.redis_timeout)

    def _queue(self, name: str) -> Any:
        queue = self._queues.get(name)
        if queue is None:
            queue = open_queue(self.runner.config, name)
            self._queues[name] = queue
        return queue

    async def refresh(self) -> None:
        """Read queue depths and recorder lag of the queues this process reports."""
        config = self.runner.config
        recording = self.recording
        for queue in self.runner.recorded_queues or self.runner.queues:
            if not self.reports(queue):
                self.queue_counts.pop(queue, None)
                self.recorder_lag.pop(queue, None)
                self.lost.pop(queue, None)
                continue
            counts = await bounded(
                config, f"count the jobs of queue {queue}", self._queue(queue).getJobCounts()
            )
            self.queue_counts[queue] = {str(k): int(v) for k, v in counts.items()}
            recorder = recording.recorders.get(queue) if recording is not None else None
            if recorder is not None:
                self.recorder_lag[queue] = await bounded(config, "read the lag", recorder.lag())
                lost = read_lost(recorder.redis, recorder.prefix, queue)
                self.lost[queue] = await bounded(config, "read the lost jobs", lost)

    async def _refresh_loop(self) -> None:
        failing = False
        while True:
            try:
                await self.refresh()
                if failing:
                    log.info("metrics: reading queue depths again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                # Once per outage; /readyz tells the rest.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "metrics: cannot read queue depths (%s); retrying", detail,
                )  # fmt: skip
                failing = True
            await asyncio.sleep(self.refresh_interval)


def install_metrics(
    runner: Runner, *, port: int, host: str = "0.0.0.0", **options: Any
) -> MetricsService:
    """Add a :class:`MetricsHook` and a :class:`MetricsService` to a runner not yet started."""
    if runner.running:
        raise RuntimeError("install metrics before the runner starts")
    hook = MetricsHook()
    service = MetricsService(runner, port=port, host=host, hook=hook, **options)
    runner.hooks.append(hook)
    runner.services.append(service)
    return service
