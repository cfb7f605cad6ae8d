// A Node Worker that runs until `count` jobs have finished for good, then closes.
//
// Spec: {"count": 1, "deadlineMs": 10000}
// A job whose data has "fail": true throws Error("node refused <id>") (and is
// retried if its attempts allow); any other returns {"by": "node", "id", "echo": data}.
// Prints {"completed": [{id, name, returned}], "failed": [{id, name, attemptsMade,
// error}], "runs": N} once `count` jobs are completed or failed with no retry left;
// "runs" counts every attempt this worker made.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Worker } = bullmq;

const cfg = config();
const spec = readSpec();
const count = spec.count ?? 1;
const completed = [];
const failed = [];
let runs = 0;
deadline(spec.deadlineMs ?? 10000, () => ({ completed, failed, runs }));

let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});
const check = () => {
  if (completed.length + failed.length >= count) {
    resolveDone();
  }
};

const worker = new Worker(
  cfg.queue,
  async (job) => {
    runs += 1;
    if (job.data && job.data.fail) {
      throw new Error(`node refused ${job.id}`);
    }
    return { by: 'node', id: job.id, echo: job.data };
  },
  bullOptions(cfg, { concurrency: 5, name: 'node-consumer' }),
);
worker.on('completed', (job, returned) => {
  completed.push({ id: job.id, name: job.name, returned });
  check();
});
worker.on('failed', (job, err) => {
  // Emitted for every failed attempt; finishedOn is set only on the last one.
  if (job && job.finishedOn) {
    failed.push({
      id: job.id,
      name: job.name,
      attemptsMade: job.attemptsMade,
      error: String(err && err.message),
    });
    check();
  }
});
worker.on('error', (err) => {
  process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
});

await done;
await worker.close();
finish({ completed, failed, runs });
