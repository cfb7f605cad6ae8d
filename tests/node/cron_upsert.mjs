// Upserts job schedulers from Node and prints how Node stored them.
//
// Spec: {"schedulers": [{"id", "pattern", "tz", "name", "data"}], "deadlineMs": 10000}
// Calls queue.upsertJobScheduler(id, {pattern, tz}, {name, data}) for each and
// prints {"schedulers": [queue.getJobScheduler(id), ...]} (each has `next`).
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue } = bullmq;

const cfg = config();
const spec = readSpec();
deadline(spec.deadlineMs ?? 10000);

const queue = new Queue(cfg.queue, bullOptions(cfg));
const stored = [];
for (const s of spec.schedulers ?? []) {
  await queue.upsertJobScheduler(
    s.id,
    { pattern: s.pattern, tz: s.tz },
    { name: s.name, data: s.data ?? {} },
  );
  stored.push(await queue.getJobScheduler(s.id));
}
await queue.close();
finish({ schedulers: stored });
