// A Node Worker that processes `count` jobs, then closes.
//
// Spec: {"count": 1, "deadlineMs": 10000}
// Each job is recorded as {id, name, data, attemptsMade, returned} and the
// processor returns {"by": "node", "id", "name", "echo": data}.
// Prints {"jobs": [...], "failed": [...]} once `count` jobs have completed.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Worker } = bullmq;

const cfg = config();
const spec = readSpec();
const count = spec.count ?? 1;
const seen = [];
const failed = [];
deadline(spec.deadlineMs ?? 10000, () => ({ jobs: seen, failed }));

let completed = 0;
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});

const worker = new Worker(
  cfg.queue,
  async (job) => {
    const returned = { by: 'node', id: job.id, name: job.name, echo: job.data };
    seen.push({
      id: job.id,
      name: job.name,
      data: job.data,
      attemptsMade: job.attemptsMade,
      returned,
    });
    return returned;
  },
  bullOptions(cfg, { concurrency: 1 }),
);
worker.on('completed', () => {
  completed += 1;
  if (completed >= count) {
    resolveDone();
  }
});
worker.on('failed', (job, err) => {
  failed.push({ id: job ? job.id : null, error: String(err && err.message) });
});
worker.on('error', (err) => {
  process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
});

await done;
await worker.close();
finish({ jobs: seen, failed });
