// Prints the fire times Node's cron-parser (the one BullMQ uses) gives for each case.
// Input (argv[2]): JSON [{pattern, tz, after, count}, ...]; output: JSON, per case
// [ISO, ...] or {"error": message} when cron-parser gives up.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { CronExpressionParser } = require('cron-parser');

const cases = JSON.parse(process.argv[2]);
const results = cases.map(({ pattern, tz, after, count }) => {
  try {
    const it = CronExpressionParser.parse(pattern, { currentDate: new Date(after), tz });
    return Array.from({ length: count }, () => it.next().toDate().toISOString());
  } catch (err) {
    return { error: String(err.message) };
  }
});
console.log(JSON.stringify(results));
