// Reads jobs from Node as bull-board does: queue.getJob(id) and queue.getJobState(id).
//
// Spec: {"ids": ["1", ...], "deadlineMs": 8000}
// Prints {"jobs": [{id, found, state, returnvalue, failedReason, attemptsMade, finishedOn}]}:
// found is false when queue.getJob(id) returned nothing.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue } = bullmq;

const cfg = config();
const spec = readSpec();
const results = [];
deadline(spec.deadlineMs ?? 8000, () => ({ jobs: results }));

const queue = new Queue(cfg.queue, bullOptions(cfg));
try {
  for (const id of spec.ids || []) {
    const job = await queue.getJob(id);
    results.push({
      id,
      found: Boolean(job),
      state: await queue.getJobState(id),
      returnvalue: job ? job.returnvalue ?? null : null,
      failedReason: job ? job.failedReason ?? null : null,
      attemptsMade: job ? job.attemptsMade : null,
      finishedOn: job ? job.finishedOn ?? null : null,
    });
  }
} finally {
  await queue.close();
}
finish({ jobs: results });
