// Retries finished jobs from Node, as bull-board's retry button does: job.retry(state, opts).
//
// Spec: {"ids": ["1", ...], "state": "failed" | "completed", "opts": {"resetAttemptsMade": true},
//        "deadlineMs": 8000}
// Prints {"jobs": [{id, found, stateBefore, stateAfter, attemptsMade}]}: found is false when
// queue.getJob(id) returned nothing (then the job is not retried).
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
    if (!job) {
      results.push({ id, found: false });
      continue;
    }
    const stateBefore = await job.getState();
    await job.retry(spec.state || 'failed', spec.opts || {});
    results.push({
      id,
      found: true,
      stateBefore,
      stateAfter: await queue.getJobState(id),
      attemptsMade: job.attemptsMade,
    });
  }
} finally {
  await queue.close();
}
finish({ jobs: results });
