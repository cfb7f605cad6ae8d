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

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .hooks import JobHook, JobRun, Outcome

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

#: Job options that carry the trace context (W3C Trace Context).
CONTEXT_KEYS = ("traceparent", "tracestate")
#: The job option (as stored in Redis) of BullMQ's built-in telemetry context.
METADATA_KEY = "tm"

TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

_available: bool | None = None


def tracing_available() -> bool:
    """Whether ``opentelemetry-api`` is importable (checked once)."""
    global _available
    if _available is None:
        try:
            import opentelemetry.trace  # noqa: F401
            from opentelemetry.trace.propagation import tracecontext  # noqa: F401
        except ImportError:
            _available = False
        else:
            _available = True
    return _available


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _metadata(opts: dict[str, Any]) -> dict[str, Any]:
    """The headers BullMQ's built-in telemetry left in ``opts``, as a dict (maybe empty)."""
    telemetry = opts.get("telemetry")
    for value in (
        opts.get(METADATA_KEY),
        telemetry.get("metadata") if isinstance(telemetry, dict) else None,
    ):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                continue
        if isinstance(value, dict):
            return value
    return {}


def job_trace_context(opts: Any) -> dict[str, str]:
    """The W3C ``traceparent`` (and ``tracestate``) a job's options carry; ``{}`` if none.

    A well-formed ``traceparent`` option wins; otherwise the context of BullMQ's
    built-in telemetry (``tm`` as stored, or ``telemetry.metadata`` as Node
    reads it; a JSON string or an object). Needs no opentelemetry.
    """
    if not isinstance(opts, dict):
        return {}
    for carrier in (opts, _metadata(opts)):
        traceparent = carrier.get("traceparent")
        if isinstance(traceparent, str) and TRACEPARENT.match(traceparent):
            found = {"traceparent": traceparent}
            if isinstance(tracestate := carrier.get("tracestate"), str) and tracestate:
                found["tracestate"] = tracestate
            return found
    return {}


def inject_trace_context(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus the current span's context, for Python and Node consumers.

    Adds ``traceparent``/``tracestate`` and the same headers as BullMQ telemetry
    metadata (``tm``, a JSON string), which a Node worker with ``bullmq-otel``
    continues. A ``traceparent`` already in ``options`` wins and is copied into
    ``tm``. Returns ``options`` itself when there is no context to add (no
    opentelemetry, no valid current span, a non-string ``traceparent``).
    """
    if "traceparent" in options:
        if not isinstance(options["traceparent"], str):
            return options
        carrier = {k: v for k in CONTEXT_KEYS if isinstance(v := options.get(k), str)}
    else:
        if not tracing_available():
            return options
        from opentelemetry import trace

        if not trace.get_current_span().get_span_context().is_valid:
            return options
        injected: dict[str, str] = {}
        _propagator().inject(injected)
        carrier = {k: v for k, v in injected.items() if k in CONTEXT_KEYS}
    metadata = json.dumps(carrier, separators=(",", ":"))
    return {**options, **carrier, METADATA_KEY: metadata}


class TracingHook(JobHook):
    """Runs each job in a CONSUMER span that continues the producer's trace."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        if not tracing_available():
            raise ConfigError("tracing needs opentelemetry: pip install 'bullworker[otel]'")
        from opentelemetry import context, trace

        from . import __version__

        self._tracer = trace.get_tracer("bullworker", __version__, tracer_provider=tracer_provider)
        self._propagator = _propagator()
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
