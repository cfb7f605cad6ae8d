"""OpenTelemetry tracing: the trace context travels in the job options.

Needs ``opentelemetry-api`` (``pip install 'bullworker[otel]'`` also brings the
SDK); it is imported only when tracing is used.

Two carriers of W3C Trace Context exist in BullMQ job options, and both are
read and written:

- ``traceparent`` / ``tracestate`` directly in the options, as Node's BullMQ
  instrumentation packages add them;
- ``telemetry.metadata``, BullMQ's built-in telemetry (Node ``bullmq-otel``):
  the propagation headers as a JSON string, e.g. ``{"traceparent": "00-..."}``.
  Redis holds it under the short key ``tm`` (which Node reads back as
  ``opts.telemetry.metadata``; the Python port leaves it ``tm``).

- Producer: :func:`inject_trace_context` puts the current span's context into a
  job's options in both carriers; ``WorkerService`` calls it for every job.
- Consumer: :class:`TracingHook` starts a CONSUMER span ``<queue> process
  <JobName>`` whose parent is the job's context (:func:`job_trace_context`),
  makes it current while the handler runs, and ends it (status ERROR on failure).
- Logs: :class:`TraceIdFilter` adds ``trace_id`` and ``span_id`` to records.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bullworker.core.errors import ConfigError
from bullworker.core.hooks import JobHook, JobRun, Outcome
from bullworker.core.trace import job_trace_context, propagator, tracing_available

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider


class TracingHook(JobHook):
    """Runs each job in a CONSUMER span that continues the producer's trace."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        if not tracing_available():
            raise ConfigError("tracing needs opentelemetry: pip install 'bullworker[otel]'")
        from opentelemetry import context, trace

        from bullworker.core.version import __version__

        self._tracer = trace.get_tracer("bullworker", __version__, tracer_provider=tracer_provider)
        self._propagator = propagator()
        # Looked up once: these run for every job.
        self._context, self._trace = context, trace

    def job_started(self, run: JobRun) -> None:
        # Never the runner's own ambient context: no traceparent means a new trace.
        parent = self._propagator.extract(
            job_trace_context(run.opts), context=self._context.Context()
        )
        span = self._tracer.start_span(
            f"{run.queue} process {run.name}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "bullmq",
                "messaging.operation": "process",
                "messaging.destination.name": run.queue,
                "messaging.message.id": run.id,
                "bullmq.job.name": run.name,
                "bullmq.job.attempt": run.attempt,
                "bullmq.job.attempts": run.attempts,
            },
        )
        run.state["otel.span"] = span
        run.state["otel.token"] = self._context.attach(self._trace.set_span_in_context(span))

    def job_finished(
        self,
        run: JobRun,
        outcome: Outcome,
        error: BaseException | None,
        duration: float,
        *,
        will_retry: bool,
    ) -> None:
        span = run.state.pop("otel.span", None)
        token = run.state.pop("otel.token", None)
        try:
            if span is not None:
                if error is not None:
                    span.record_exception(error)
                    reason = (
                        f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                    )
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, reason))
                    span.set_attribute("bullmq.job.will_retry", will_retry)
                span.end()
        finally:
            if token is not None:
                self._context.detach(token)


class TraceIdFilter(logging.Filter):
    """Adds ``trace_id`` (32 hex digits) and ``span_id`` of the current span to records.

    Both are ``"-"`` outside a span or without opentelemetry. Attach it to a
    handler and use the fields in its format::

        handler.addFilter(TraceIdFilter())
        handler.setFormatter(logging.Formatter("%(levelname)s [%(trace_id)s] %(message)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        trace_id = span_id = "-"
        if tracing_available():
            from opentelemetry import trace

            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
        record.trace_id = trace_id
        record.span_id = span_id
        return True
