// A Node FlowProducer and Node workers, for the flow tests (tests/integration/test_flows.py).
//
// Spec: {"flow": {name, queueName, data, opts, children: [...]} (optional),
//        "workers": [{"queue": "node-images", "fail": ["broken"]}] (optional),
//        "count": 2, "deadlineMs": 15000}
// Adds the flow with a FlowProducer (on PREFIX), then lets one Worker per entry
// of "workers" run jobs until `count` of them have finished (completed or
// failed). Every job run is recorded as {id, name, queue, data, parent,
// childrenValues (job.getChildrenValues()), ignored
// (job.getIgnoredChildrenFailures()), returned or error}; a job whose name is
// in its worker's "fail" list throws Error("node fails <name>"), the others
// return {"by": "node", "name", "id", "echo": data, "children": childrenValues}.
// Prints {"tree": {id, name, queueName, children: [...]} or null, "jobs": [...]}.
import { bullOptions, bullmq, config, deadline, finish, readSpec } from './common.mjs';

const { FlowProducer, Worker } = bullmq;

const cfg = config();
const spec = readSpec();
const count = spec.count ?? 0;
const seen = [];
let tree = null;
deadline(spec.deadlineMs ?? 15000, () => ({ tree, jobs: seen }));

function shape(node) {
  return {
    id: node.job.id,
    name: node.job.name,
    queueName: node.job.queueName,
    children: (node.children || []).map(shape),
  };
}

let finished = 0;
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});
function oneFinished() {
  finished += 1;
  if (finished >= count) {
    resolveDone();
  }
}

const workers = (spec.workers || []).map((entry) => {
  const fail = new Set(entry.fail || []);
  const worker = new Worker(
    entry.queue,
    async (job) => {
      const record = {
        id: job.id,
        name: job.name,
        queue: entry.queue,
        data: job.data,
        parent: job.parent ?? null,
        childrenValues: await job.getChildrenValues(),
        ignored: await job.getIgnoredChildrenFailures(),
      };
      seen.push(record);
      if (fail.has(job.name)) {
        record.error = `node fails ${job.name}`;
        throw new Error(record.error);
      }
      record.returned = {
        by: 'node',
        name: job.name,
        id: job.id,
        echo: job.data,
        children: record.childrenValues,
      };
      return record.returned;
    },
    bullOptions(cfg, { concurrency: 1 }),
  );
  worker.on('completed', oneFinished);
  worker.on('failed', oneFinished);
  worker.on('error', (err) => {
    process.stderr.write(`worker error: ${err && err.stack ? err.stack : err}\n`);
  });
  return worker;
});

if (spec.flow) {
  const producer = new FlowProducer(bullOptions(cfg));
  tree = shape(await producer.add(spec.flow));
  await producer.close();
}
if (count > 0) {
  await done;
}
await Promise.all(workers.map((worker) => worker.close()));
finish({ tree, jobs: seen });
