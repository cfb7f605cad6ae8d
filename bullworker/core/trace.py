"""The W3C trace context a job carries in its options, read and written.

Two carriers exist in BullMQ job options, and both are read and written:
``traceparent``/``tracestate`` directly in the options (Node's BullMQ
instrumentation packages), and ``tm`` (``telemetry.metadata`` as Node reads it),
BullMQ's built-in telemetry: the propagation headers as a JSON string.
Reading needs no opentelemetry; writing the current span's context needs
``opentelemetry-api``, imported only when it is installed.
"""

from __future__ import annotations

import json
import re
from typing import Any

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


def propagator() -> Any:
    """opentelemetry's W3C Trace Context propagator (needs opentelemetry-api)."""
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
        propagator().inject(injected)
        carrier = {k: v for k, v in injected.items() if k in CONTEXT_KEYS}
    metadata = json.dumps(carrier, separators=(",", ":"))
    return {**options, **carrier, METADATA_KEY: metadata}
