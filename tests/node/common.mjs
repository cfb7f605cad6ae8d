// Shared helpers of the interop scripts.
//
// Every script is configured by the environment (REDIS_URL, PREFIX, QUEUE)
// plus one optional JSON argument (the "spec"), prints exactly one JSON line
// on stdout and exits by itself: a hard deadline (spec.deadlineMs) prints
// {"error": "timeout", ...} and exits with status 3 if the work hangs.
// BULLMQ_PACKAGE chooses the Node BullMQ they run (see bullmq.mjs).

export { bullmq, bullmqPackage, bullmqVersion } from './bullmq.mjs';

export function config() {
  const prefix = process.env.PREFIX;
  const queue = process.env.QUEUE;
  if (!prefix || !queue) {
    fail('PREFIX and QUEUE must be set in the environment');
  }
  return {
    redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
    prefix,
    queue,
  };
}

// Options for one bullmq object; each object gets its own connection.
export function bullOptions(cfg, extra = {}) {
  return { connection: { url: cfg.redisUrl }, prefix: cfg.prefix, ...extra };
}

export function readSpec() {
  const raw = process.argv[2];
  if (raw === undefined || raw === '') {
    return {};
  }
  try {
    return JSON.parse(raw);
  } catch (err) {
    fail(`the spec argument is not JSON: ${err.message}`);
  }
}

// Print one JSON line and exit once stdout has been flushed.
export function finish(result, code = 0) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code));
}

export function fail(message) {
  process.stderr.write(`${message}\n`);
  finish({ error: message }, 2);
}

// Exit with status 3 (printing partial results) if still running after `ms`.
export function deadline(ms, partial = () => ({})) {
  const timer = setTimeout(() => {
    process.stderr.write(`deadline of ${ms} ms reached\n`);
    finish({ error: 'timeout', ...partial() }, 3);
  }, ms);
  timer.unref();
  return timer;
}

process.on('unhandledRejection', (err) => {
  fail(`unhandled rejection: ${err && err.stack ? err.stack : err}`);
});
