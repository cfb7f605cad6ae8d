// Adds jobs with BullMQ's built-in telemetry (bullmq-otel) inside an active span,
// so that each job carries the span context in opts.telemetry.metadata.
//
// Spec: {"jobs": [{"name", "data", "opts"}], "bulk": false, "deadlineMs": 10000}
// Prints {"request": {traceId, spanId}, "jobs": [{id, opts, rawOpts}], "spans": [...]}:
// opts as Node reads them back, rawOpts the job hash's "opts" field as stored in
// Redis, spans every finished span (see otel.mjs), the "request" span included.
import { Redis } from 'ioredis';

import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue } = bullmq;
import { finishedSpans, shutdown, telemetry, tracer } from './otel.mjs';

const cfg = config();
const spec = readSpec();
const entries = spec.jobs || [];
deadline(spec.deadlineMs ?? 10000);

const queue = new Queue(cfg.queue, bullOptions(cfg, { telemetry }));
const results = [];
let request;
try {
  const added = await tracer.startActiveSpan('request', async (span) => {
    try {
      request = { traceId: span.spanContext().traceId, spanId: span.spanContext().spanId };
      if (spec.bulk) {
        return await queue.addBulk(entries.map((e) => ({ ...e, opts: e.opts || {} })));
      }
      const jobs = [];
      for (const entry of entries) {
        jobs.push(await queue.add(entry.name, entry.data || {}, entry.opts || {}));
      }
      return jobs;
    } finally {
      span.end();
    }
  });
  const redis = new Redis(cfg.redisUrl);
  try {
    for (const job of added) {
      const stored = await queue.getJob(job.id);
      const rawOpts = await redis.hget(`${cfg.prefix}:${cfg.queue}:${job.id}`, 'opts');
      results.push({ id: job.id, opts: stored.opts, rawOpts: JSON.parse(rawOpts) });
    }
  } finally {
    await redis.quit();
  }
} finally {
  await queue.close();
}
const spans = finishedSpans();
await shutdown();
finish({ request, jobs: results, spans });
