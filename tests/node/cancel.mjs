// Sends bullworker's cancel request for a running job, as docs/node-interop.md shows it.
//
// Spec: {"id": "<job id>", "reason": "why", "deadlineMs": 10000}
// Prints {"listeners": n}: how many bullworker runners got the message.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Job, Queue } = bullmq;

// The function of docs/node-interop.md, as it is there.
async function cancelJob(queue, id, reason = 'cancelled by user') {
  const job = await Job.fromId(queue, id);
  if (!job) {
    throw new Error(`no job ${id} in queue ${queue.name}`);
  }
  const prefix = queue.opts.prefix ?? 'bull';
  const key = `${prefix}:bw:cancel:${queue.name}`;
  const request = { reason, timestamp: job.timestamp, at: Date.now() };
  const message = { queue: queue.name, id, reason, timestamp: job.timestamp };
  const client = await (queue.getBackend ? queue.getBackend().client : queue.client); // 6.x, 5.x
  const replies = await client
    .multi()
    .hset(key, id, JSON.stringify(request))
    .expire(key, 3600)
    .publish(`${prefix}:bw:cancel`, JSON.stringify(message))
    .exec();
  return replies[2][1]; // how many runners got the message
}

const cfg = config();
const spec = readSpec();
deadline(spec.deadlineMs ?? 10000);
const queue = new Queue(cfg.queue, bullOptions(cfg));
const listeners = await cancelJob(queue, spec.id, spec.reason);
await queue.close();
finish({ listeners });
