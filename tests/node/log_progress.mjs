// A Node Worker whose processor logs 3 lines and reports progress, for `count` jobs.
//
// Spec: {"count": 1, "deadlineMs": 10000}
// Each job logs "node line 1 of <id>" to "node line 3 of <id>" (job.log), reports
// progress 50 and then {"step": 3, "of": 3} (job.updateProgress), and returns
// {"by": "node"}. Prints {"jobs": [{id, logs, progress}]} once `count` jobs have
// completed; logs and progress are what the processor wrote last.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Worker } = bullmq;

const cfg = config();
const spec = readSpec();
const count = spec.count ?? 1;
const jobs = [];
deadline(spec.deadlineMs ?? 10000, () => ({ jobs }));

let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});

const worker = new Worker(
  cfg.queue,
  async (job) => {
    const logs = [1, 2, 3].map((n) => `node line ${n} of ${job.id}`);
    for (const line of logs) {
      await job.log(line);
    }
    await job.updateProgress(50);
    const progress = { step: 3, of: 3 };
    await job.updateProgress(progress);
    jobs.push({ id: job.id, logs, progress });
    return { by: 'node' };
  },
  bullOptions(cfg, { concurrency: 1 }),
);
worker.on('completed', () => {
  if (jobs.length >= count) {
    resolveDone();
  }
});
worker.on('failed', (job, err) => {
  process.stderr.write(`job ${job ? job.id : '?'} failed: ${err && err.message}\n`);
});
worker.on('error', (err) => {
  process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
});

await done;
await worker.close();
finish({ jobs });
