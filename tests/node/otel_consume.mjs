// A Node Worker with BullMQ's built-in telemetry (bullmq-otel) that processes
// `count` jobs, then closes. Its "process" spans continue the producer's trace
// from job.opts.telemetry.metadata.
//
// Spec: {"count": 1, "deadlineMs": 10000}
// Prints {"jobs": [{id, name, opts, active}], "failed": [...], "spans": [...]}:
// active is the trace/span id current inside the processor, spans every
// finished span (see otel.mjs).
import { trace } from '@opentelemetry/api';

import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Worker } = bullmq;
import { finishedSpans, shutdown, telemetry } from './otel.mjs';

const cfg = config();
const spec = readSpec();
const count = spec.count ?? 1;
const seen = [];
const failed = [];
deadline(spec.deadlineMs ?? 10000, () => ({ jobs: seen, failed }));

let finished = 0;
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});
function settle() {
  finished += 1;
  if (finished >= count) {
    resolveDone();
  }
}

const worker = new Worker(
  cfg.queue,
  async (job) => {
    const active = trace.getActiveSpan();
    const ids = active ? active.spanContext() : null;
    seen.push({
      id: job.id,
      name: job.name,
      opts: job.opts,
      active: ids ? { traceId: ids.traceId, spanId: ids.spanId } : null,
    });
    return { by: 'node' };
  },
  bullOptions(cfg, { concurrency: 1, telemetry }),
);
worker.on('completed', settle);
worker.on('failed', (job, err) => {
  failed.push({ id: job ? job.id : null, error: String(err && err.message) });
  settle();
});
worker.on('error', (err) => {
  process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
});

await done;
await worker.close();
const spans = finishedSpans();
await shutdown();
finish({ jobs: seen, failed, spans });
