// The Node producer of the soak run (bench/soak.py): adds its share of SoakJob jobs with addBulk.
//
//   node bench/node/soak_produce.mjs COUNT CHUNK MAX_WAITING IDS_FILE
//
// Redis, the key prefix and the queue come from REDIS_URL, BULL_PREFIX and BULL_QUEUE. Job k
// (0 <= k < COUNT) has the data {"p": "node", "i": k}. A chunk is added only while fewer than
// MAX_WAITING jobs wait, so that producing runs alongside the consumers. Each acknowledged chunk
// appends "<job id> <k>" lines to IDS_FILE; a chunk that fails (Redis restarting) is added again
// after a pause, and each such retry is reported. At the end it prints one JSON line:
// {"added": n, "retries": [{"at": unix seconds, "first": k, "stage": "count"|"add", "error": "..."}]}.
// BullMQ comes from the pinned install of tests/node, as in bench/node/worker.mjs.
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../tests/node/package.json', import.meta.url));
const { Queue } = require('bullmq');

const [count, chunk, maxWaiting] = process.argv.slice(2, 5).map(Number);
const idsFile = process.argv[5];
if (!(count >= 0) || !(chunk > 0) || !(maxWaiting > 0) || !idsFile) {
  process.stderr.write('usage: soak_produce.mjs COUNT CHUNK MAX_WAITING IDS_FILE\n');
  process.exit(2);
}

const queue = new Queue(process.env.BULL_QUEUE || 'default', {
  connection: { url: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0' },
  prefix: process.env.BULL_PREFIX || 'bull',
});
let connectionErrors = 0;
queue.on('error', () => {
  connectionErrors += 1; // Redis restarting: the add below fails and is retried
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const retries = [];
let next = 0;
while (next < count) {
  const last = Math.min(next + chunk, count);
  let stage = 'count';
  try {
    if ((await queue.getWaitingCount()) >= maxWaiting) {
      await sleep(50);
      continue;
    }
    const entries = [];
    for (let k = next; k < last; k += 1) {
      entries.push({ name: 'SoakJob', data: { p: 'node', i: k } });
    }
    stage = 'add';
    const jobs = await queue.addBulk(entries);
    appendFileSync(idsFile, jobs.map((job, n) => `${job.id} ${next + n}\n`).join(''));
    next = last;
  } catch (err) {
    retries.push({ at: Date.now() / 1000, first: next, stage, error: String(err).slice(0, 200) });
    await sleep(500);
  }
}
await queue.close();
process.stdout.write(`${JSON.stringify({ added: next, retries, connectionErrors })}\n`);
process.exit(0);
