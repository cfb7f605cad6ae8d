// Add jobs from Node and (optionally) wait until they are finished.
//
// Spec: {"jobs": [{"name", "data", "opts"}], "wait": true, "waitMs": 8000,
//        "deadlineMs": 12000}
// Prints {"jobs": [{id, name, data, opts, state, returnvalue, failedReason,
//         attemptsMade, stacktrace, progress, logs, processedBy, outcome}],
//         "progressEvents": [{jobId, data}]}, where outcome is
// {"resolved": true, "value": ...} or {"resolved": false, "error": "..."} from
// job.waitUntilFinished (absent without "wait").
import { Redis } from 'ioredis';

import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue, QueueEvents } = bullmq;

const cfg = config();
const spec = readSpec();
const jobs = spec.jobs || [];
const waitMs = spec.waitMs ?? 8000;
const results = [];
const progressEvents = [];
deadline(spec.deadlineMs ?? 12000, () => ({ jobs: results, progressEvents }));

async function lastEventId(stream) {
  const redis = new Redis(cfg.redisUrl);
  try {
    const [last] = await redis.xrevrange(stream, '+', '-', 'COUNT', 1);
    return last ? last[0] : '0-0';
  } finally {
    await redis.quit();
  }
}

// Every finish event since the first add, by job id. waitUntilFinished rejects
// with "Missing key" when a job with removeOnComplete/removeOnFail finished
// before its check ran, even though the job's finish event is in the stream (it
// may have been handled before `add` resolved, or still be on its way to
// QueueEvents). For such a job the outcome is its finish event, seen here.
const seen = new Map();

async function finishEvent(jobId) {
  const until = Date.now() + waitMs;
  while (!seen.has(jobId) && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return seen.get(jobId);
}

async function outcomeOf(job) {
  if (!events) {
    return undefined;
  }
  try {
    return { resolved: true, value: await job.waitUntilFinished(events, waitMs) };
  } catch (err) {
    if (/Missing key/.test(String(err && err.message))) {
      const event = await finishEvent(job.id);
      if (event) {
        return event;
      }
    }
    return { resolved: false, error: String(err && err.message ? err.message : err) };
  }
}

const queue = new Queue(cfg.queue, bullOptions(cfg));
let events = null;
try {
  if (spec.wait) {
    // QueueEvents reads from '$' by default, and waitUntilReady() resolves
    // before its first XREAD is sent: a job finished in between would be
    // missed. Reading from the stream's last id before the add misses nothing.
    events = new QueueEvents(
      cfg.queue,
      bullOptions(cfg, { lastEventId: await lastEventId(queue.keys.events) }),
    );
    events.on('progress', ({ jobId, data }) => progressEvents.push({ jobId, data }));
    events.on('completed', ({ jobId, returnvalue }) =>
      seen.set(jobId, { resolved: true, value: returnvalue }),
    );
    events.on('failed', ({ jobId, failedReason }) =>
      seen.set(jobId, { resolved: false, error: failedReason }),
    );
    await events.waitUntilReady();
  }
  const added = [];
  const waits = [];
  for (const entry of jobs) {
    const job = await queue.add(entry.name, entry.data, entry.opts || {});
    added.push(job);
    waits.push(outcomeOf(job));
  }
  const outcomes = await Promise.all(waits);
  for (const [index, job] of added.entries()) {
    const stored = await queue.getJob(job.id);
    results.push({
      id: job.id,
      name: stored ? stored.name : null,
      data: stored ? stored.data : null,
      opts: stored ? stored.opts : null,
      state: await queue.getJobState(job.id),
      returnvalue: stored ? stored.returnvalue ?? null : null,
      failedReason: stored ? stored.failedReason ?? null : null,
      attemptsMade: stored ? stored.attemptsMade : null,
      stacktrace: stored ? stored.stacktrace : null,
      progress: stored ? stored.progress ?? null : null,
      logs: (await queue.getJobLogs(job.id)).logs,
      processedBy: stored ? stored.processedBy ?? null : null,
      outcome: outcomes[index],
    });
  }
} finally {
  if (events) {
    await events.close();
  }
  await queue.close();
}
finish({ jobs: results, progressEvents });
