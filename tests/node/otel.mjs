// OpenTelemetry for the interop scripts: a registered SDK whose spans stay in
// memory, and the `telemetry` option of BullMQ's built-in instrumentation
// (bullmq-otel), which carries the trace context in job.opts.telemetry.metadata.
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { BullMQOtel } from 'bullmq-otel';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
// The default AsyncLocalStorage context manager and W3C trace-context propagator.
provider.register();

export const tracer = trace.getTracer('bullworker-interop');
export const telemetry = new BullMQOtel({ tracerName: 'bullworker-interop' });

const KINDS = ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];

// The finished spans as JSON: ids in lowercase hex, as W3C traceparent writes them.
export function finishedSpans() {
  return exporter.getFinishedSpans().map((span) => ({
    name: span.name,
    kind: KINDS[span.kind],
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentSpanId: span.parentSpanContext ? span.parentSpanContext.spanId : null,
    attributes: span.attributes,
  }));
}

// Flushes nothing (the processor is synchronous) and empties the exporter.
export async function shutdown() {
  await provider.shutdown();
}
