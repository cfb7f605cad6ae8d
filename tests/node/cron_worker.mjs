// A Node Worker that runs every job it gets for `durationMs`, then closes.
//
// Spec: {"durationMs": 6000, "deadlineMs": 15000}
// Prints {"jobs": [{id, name, data, repeatJobKey, processedOn, seenAt}], "failed": [...]}.
// Used by tests/integration/test_cron_node.py to let Node advance a job scheduler.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Worker } = bullmq;

const cfg = config();
const spec = readSpec();
const jobs = [];
const failed = [];
deadline(spec.deadlineMs ?? (spec.durationMs ?? 6000) + 8000, () => ({ jobs, failed }));

const worker = new Worker(
  cfg.queue,
  async (job) => {
    jobs.push({
      id: job.id,
      name: job.name,
      data: job.data,
      repeatJobKey: job.repeatJobKey ?? null,
      processedOn: job.processedOn ?? null,
      seenAt: Date.now(),
    });
    return { by: 'node' };
  },
  bullOptions(cfg, { concurrency: 1 }),
);
worker.on('failed', (job, err) => {
  failed.push({ id: job ? job.id : null, error: String(err && err.message) });
});
worker.on('error', (err) => {
  process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
});

await worker.waitUntilReady();
await new Promise((resolve) => {
  setTimeout(resolve, spec.durationMs ?? 6000);
});
await worker.close();
finish({ jobs, failed });
