// Pauses, resumes or adds to the queue from a Node Queue, which records its
// BullMQ version in the queue's meta as it starts (from 5.20.0 on).
//
// Spec: {"action": "pause" | "resume" | "add", "jobs": [{"name", "data", "opts"}],
//        "deadlineMs": 8000}
// Prints {"package", "version", "meta": the meta's version field,
//         "paused": queue.isPaused(), "ids": ids of the jobs added}.
import { bullOptions, bullmq, bullmqPackage, bullmqVersion, config, deadline, finish, readSpec }
  from './common.mjs';

const { Queue } = bullmq;

const cfg = config();
const spec = readSpec();
deadline(spec.deadlineMs ?? 8000);

const queue = new Queue(cfg.queue, bullOptions(cfg));
const ids = [];
let result;
try {
  await queue.waitUntilReady();
  if (spec.action === 'pause') {
    await queue.pause();
  } else if (spec.action === 'resume') {
    await queue.resume();
  } else if (spec.action === 'add') {
    for (const entry of spec.jobs || []) {
      ids.push((await queue.add(entry.name, entry.data, entry.opts || {})).id);
    }
  } else {
    throw new Error(`unknown action ${JSON.stringify(spec.action)}`);
  }
  result = {
    package: bullmqPackage,
    version: bullmqVersion,
    meta: await queue.getVersion(),
    paused: await queue.isPaused(),
    ids,
  };
} finally {
  await queue.close();
}
finish(result);
