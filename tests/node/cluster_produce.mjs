// Add jobs from Node BullMQ into a Redis Cluster, through an ioredis Cluster client.
//
// REDIS_URL is one seed node of the cluster (redis://host:port); PREFIX must carry the
// hash tag (e.g. "{bw}") so that all keys of the queue land in one slot.
// Spec: {"jobs": [{"name", "data", "opts"}], "deadlineMs": 20000}
// Prints {"ids": [...]}: the ids of the jobs, in the order of the spec.
import { Cluster } from 'ioredis';

import { bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { Queue } = bullmq;

const cfg = config();
const spec = readSpec();
const ids = [];
deadline(spec.deadlineMs ?? 20000, () => ({ ids }));

const seed = new URL(cfg.redisUrl);
// BullMQ needs maxRetriesPerRequest null on its connections; a Cluster takes it per node.
const connection = new Cluster([{ host: seed.hostname, port: Number(seed.port || 6379) }], {
  redisOptions: { maxRetriesPerRequest: null },
});
const queue = new Queue(cfg.queue, { connection, prefix: cfg.prefix });
try {
  const jobs = spec.jobs || [];
  // addBulk in chunks: one MULTI per chunk, all keys in the queue's slot.
  for (let start = 0; start < jobs.length; start += 500) {
    const added = await queue.addBulk(jobs.slice(start, start + 500));
    ids.push(...added.map((job) => job.id));
  }
} finally {
  await queue.close();
  await connection.quit();
}
finish({ ids });
