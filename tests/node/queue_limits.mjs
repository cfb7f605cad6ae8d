// Set (or remove) a queue's global rate limit and global concurrency, as a Node app would.
//
// Spec: {"rateLimit": [max, durationMs] | null, "concurrency": n | null,
//        "deadlineMs": 8000}; a null (or absent) key leaves that setting alone, "remove":
//        true removes both.
// Prints {"rateLimit": {max, duration}, "concurrency": n | null} as the queue reads them back.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue } = bullmq;

const cfg = config();
const spec = readSpec();
deadline(spec.deadlineMs ?? 8000);

const queue = new Queue(cfg.queue, bullOptions(cfg));
try {
  if (spec.remove) {
    await queue.removeGlobalRateLimit();
    await queue.removeGlobalConcurrency();
  }
  if (spec.rateLimit) {
    await queue.setGlobalRateLimit(spec.rateLimit[0], spec.rateLimit[1]);
  }
  if (spec.concurrency) {
    await queue.setGlobalConcurrency(spec.concurrency);
  }
  const result = {
    rateLimit: await queue.getGlobalRateLimit(),
    concurrency: await queue.getGlobalConcurrency(),
  };
  await queue.close();
  finish(result);
} catch (err) {
  await queue.close();
  finish({ error: String(err && err.stack ? err.stack : err) }, 1);
}
