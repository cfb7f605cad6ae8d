// Fault suite (tests/faults): add jobs from Node exactly as given, bad ones included.
//
// Environment: REDIS_URL, PREFIX, QUEUE. Argument: JSON [{"name", "data", "opts"}].
// Prints {"ids": [...]} on stdout and exits; exits 3 if Redis does not answer in 10 s.
import { bullmq } from './bullmq.mjs';

const { Queue } = bullmq;

const timer = setTimeout(() => {
  process.stderr.write('fault_produce: no answer from Redis within 10 s\n');
  process.exit(3);
}, 10000);

const jobs = JSON.parse(process.argv[2] || '[]');
const queue = new Queue(process.env.QUEUE, {
  connection: { url: process.env.REDIS_URL },
  prefix: process.env.PREFIX,
});
try {
  const ids = [];
  for (const job of jobs) {
    ids.push((await queue.add(job.name, job.data, job.opts || {})).id);
  }
  process.stdout.write(`${JSON.stringify({ ids })}\n`);
} finally {
  await queue.close();
  clearTimeout(timer);
}
