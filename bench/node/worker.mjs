// The Node BullMQ worker of the throughput benchmark: the reference ceiling.
//
//   node bench/node/worker.mjs noop|sleep QUEUE CONCURRENCY
//
// Redis and the key prefix come from REDIS_URL and BULL_PREFIX. It runs until
// SIGTERM, then closes the worker and exits. BullMQ is loaded from the pinned
// install of tests/node (package-lock.json there), the same version that the
// interop tests check bullworker's wire format against.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const { Worker } = require('bullmq');

const [workload, queue, concurrency] = process.argv.slice(2);
const processors = {
  noop: async () => null,
  sleep: () => new Promise((resolve) => setTimeout(resolve, 1)),
};
if (!processors[workload] || !queue) {
  process.stderr.write('usage: worker.mjs noop|sleep QUEUE CONCURRENCY\n');
  process.exit(2);
}

const worker = new Worker(queue, processors[workload], {
  connection: { url: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0' },
  prefix: process.env.BULL_PREFIX || 'bull',
  concurrency: Number(concurrency || 10),
});
worker.on('error', (err) => process.stderr.write(`worker error: ${err}\n`));

const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
