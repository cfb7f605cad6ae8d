// What Node tools (bull-board among them) see of a queue's workers and jobs.
//
// Spec: {"jobIds": ["1", ...], "deadlineMs": 8000}
// Prints {"workers": [{name, rawname, addr, ...}] from queue.getWorkers(),
//         "jobs": {id: {processedBy, processedOn, attemptsMade, state}} from Job.fromId}.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Job, Queue } = bullmq;

const cfg = config();
const spec = readSpec();
deadline(spec.deadlineMs ?? 8000);

const queue = new Queue(cfg.queue, bullOptions(cfg));
try {
  const workers = await queue.getWorkers();
  const jobs = {};
  for (const id of spec.jobIds || []) {
    const job = await Job.fromId(queue, id);
    jobs[id] = job
      ? {
          processedBy: job.processedBy ?? null,
          processedOn: job.processedOn ?? null,
          attemptsMade: job.attemptsMade,
          state: await job.getState(),
        }
      : null;
  }
  await queue.close();
  finish({ workers, jobs });
} catch (err) {
  await queue.close();
  finish({ error: String(err && err.stack ? err.stack : err) }, 1);
}
