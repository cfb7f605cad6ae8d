// Which Node BullMQ the interop scripts run: BULLMQ_PACKAGE names one of the
// package.json dependencies (default "bullmq"); the others are npm aliases of
// older BullMQ versions ("bullmq5": the newest 5.x, "bullmq5-oldest": the oldest
// 5.x bullworker supports). Scripts take the classes from here, never from
// 'bullmq' directly:
//
//   import { bullmq } from './common.mjs';
//   const { Queue, Worker } = bullmq;
import { readFileSync } from 'node:fs';

export const bullmqPackage = process.env.BULLMQ_PACKAGE || 'bullmq';

function load(name) {
  const file = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  try {
    return JSON.parse(readFileSync(file, 'utf8')).version;
  } catch {
    process.stderr.write(
      `BULLMQ_PACKAGE=${name} is not installed in tests/node: run npm ci --prefix tests/node\n`,
    );
    process.exit(2);
  }
}

// The installed version of that package ("5.81.5").
export const bullmqVersion = load(bullmqPackage);
export const bullmq = await import(bullmqPackage);
