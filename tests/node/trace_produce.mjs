// Adds one job whose options carry a W3C trace context, as Node's BullMQ
// instrumentation does (traceparent/tracestate directly in job.opts).
//
// Environment: REDIS_URL (default redis://127.0.0.1:6379/0), PREFIX, QUEUE.
// Argument: JSON {"name", "data", "opts"}. Prints {"id", "opts"} as one line.
import { bullmq } from './bullmq.mjs';

const { Queue } = bullmq;

const spec = JSON.parse(process.argv[2] || '{}');
const url = new URL(process.env.REDIS_URL || 'redis://127.0.0.1:6379/0');
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
};
const timer = setTimeout(() => {
  console.log(JSON.stringify({ error: 'timeout' }));
  process.exit(3);
}, 10000);

const queue = new Queue(process.env.QUEUE, { connection, prefix: process.env.PREFIX });
try {
  const job = await queue.add(spec.name, spec.data || {}, spec.opts || {});
  const stored = await queue.getJob(job.id);
  console.log(JSON.stringify({ id: job.id, opts: stored.opts }));
} finally {
  await queue.close();
  clearTimeout(timer);
}
