// examples/contracts/producer.ts: a Node producer of the Python jobs of tasks.py.
//
// Its types come from generated/jobs.ts (`bullworker contracts export`): tsc refuses a job name,
// a missing field or a field of the wrong type. Data that comes from outside (a request body, a
// file) is checked at run time against the same contract's JSON Schemas, with ajv, before it
// reaches Redis. In a Node project ("type": "module") with bullmq, ajv and @types/node:
// `npx tsc -p .` then `node dist/producer.js` (tests/integration/test_contracts_node.py does so).
import { Ajv2020 } from "ajv/dist/2020.js";
import { Queue, QueueEvents } from "bullmq";

import { addJob, contract, jobQueues, type JobName, type Jobs } from "./generated/jobs.js";

const connection = { url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" };
const prefix = process.env.BULL_PREFIX ?? "bull";

// The schemas check dates and enums with patterns: ajv's format validators are not needed.
const ajv = new Ajv2020({ allErrors: true, validateFormats: false });

/** `data` if it is valid data of the job `name`; otherwise an error naming what is wrong. */
export function checked<N extends JobName>(name: N, data: unknown): Jobs[N]["data"] {
  const validate = ajv.compile<Jobs[N]["data"]>(contract.jobs[name].data);
  if (!validate(data)) {
    throw new Error(`${name}: ${ajv.errorsText(validate.errors, { dataVar: "data" })}`);
  }
  return data;
}

const billing = new Queue(jobQueues.SendInvoice, { connection, prefix });
const events = new QueueEvents(jobQueues.SendInvoice, { connection, prefix });
await events.waitUntilReady();

// Data written in the code: tsc checks it against SendInvoice's type.
const job = await addJob(billing, "SendInvoice", {
  customer: "ACME",
  lines: [{ sku: "A-1", quantity: 2, unit_price: 9.5 }],
  due: "2026-12-31",
});

// Data from outside: checked before it is queued.
const body: unknown = JSON.parse('{"invoice_id": "ACME-1", "amount": "12.50"}');
try {
  await addJob(billing, "RefundPayment", checked("RefundPayment", body));
} catch (error) {
  console.error(`refused: ${(error as Error).message}`);
}

const sent = await job.waitUntilFinished(events, 10_000); // typed: Jobs["SendInvoice"]["result"]
console.log(JSON.stringify({ id: job.id, invoice: sent.invoice_id, total: sent.total }));
await Promise.all([billing.close(), events.close()]);
