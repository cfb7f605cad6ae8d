// The Node BullMQ worker of the pickup benchmark: each job returns the wall clock (seconds)
// at which its processor started.
//
//   node bench/node/pickup_worker.mjs QUEUE CONCURRENCY
//
// It prints "ready" once the worker's connection is ready (worker.waitUntilReady(), what
// a Node service would wait for), and runs until SIGTERM. BullMQ comes from tests/node,
// as for bench/node/worker.mjs.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const { Worker } = require('bullmq');

const [queue, concurrency] = process.argv.slice(2);
const worker = new Worker(queue, async () => (performance.timeOrigin + performance.now()) / 1000, {
  connection: { url: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0' },
  prefix: process.env.BULL_PREFIX || 'bull',
  concurrency: Number(concurrency || 10),
});
worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');

const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
