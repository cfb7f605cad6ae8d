"""The exported contract on the Node side: the real tsc (strict), ajv, and a Python runner.

- examples/contracts/producer.ts compiles against the committed generated/jobs.ts, and the job
  it queues runs on a bullworker runner over the test Redis; the data it refuses with ajv never
  reaches Redis;
- a producer with a field of the wrong type, a missing required field or an unknown job name does
  not compile: tsc exits 2 and names the field;
- the jobs.ts of every supported type compiles, and its types hold what the Python side sends;
- ajv (strict mode) gives every value the verdict Python's jsonschema gives.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from bullworker import create_app
from bullworker.contracts import build_contract, render_typescript
from examples.contracts import tasks
from tests import helpers
from tests.contracts_support import EXAMPLE, GENERATED, compile_ts, example_jobs_ts, node, project
from tests.contracts_types import CASES, catalog

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


def example_project(directory: Path) -> Path:
    """The example as a Node project of its own: producer.ts, its tsconfig and generated/jobs.ts."""
    project(directory, {})
    shutil.copy(EXAMPLE / "producer.ts", directory / "producer.ts")
    shutil.copy(EXAMPLE / "tsconfig.json", directory / "tsconfig.json")
    (directory / "generated").mkdir()
    shutil.copy(GENERATED / "jobs.ts", directory / "generated" / "jobs.ts")
    return directory


async def test_the_example_producer_compiles_and_python_runs_its_job(
    tmp_path: Path, prefix: str, redis_url: str
) -> None:
    directory = example_project(tmp_path / "producer")
    compiled = compile_ts(directory, emit=True)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    config = helpers.app_config(
        bull_prefix=prefix, redis_url=redis_url, app_env="production", record_jobs=False
    )
    app = create_app(config=config, enable_worker=True, registry=tasks.reg)
    runner = app.create_runner()
    await runner.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            node(), str(directory / "dist" / "producer.js"),
            env={**helpers.node_env(prefix, "billing", redis_url), "BULL_PREFIX": prefix},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await runner.stop(grace=5)
        await app.stop()
    assert proc.returncode == 0, out.decode() + err.decode()
    assert json.loads(out.decode().strip().splitlines()[-1]) == {
        "id": "1", "invoice": "ACME-2026-12-31", "total": 19
    }  # fmt: skip
    assert "refused: RefundPayment: data/amount must be number" in err.decode()
    async with helpers.bull_queue("billing", prefix, redis_url) as queue:
        counts = await queue.getJobCounts("completed", "failed", "wait", "active", "delayed")
    assert counts == {"completed": 1, "failed": 0, "wait": 0, "active": 0, "delayed": 0}


BAD_PRODUCERS = {
    "a field of the wrong type": (
        'await addJob(queue, "SendInvoice", { customer: 42, lines: [], due: "2026-12-31" });',
        "error TS2322: Type 'number' is not assignable to type 'string'.",
    ),
    "a missing required field": (
        'await addJob(queue, "SendInvoice", { customer: "ACME", lines: [] });',
        "Property 'due' is missing in type '{ customer: string; lines: never[]; }' "
        "but required in type 'Invoice'.",
    ),
    "a nested field of the wrong type": (
        'await addJob(queue, "SendInvoice", { customer: "ACME", due: "2026-12-31",\n'
        '  lines: [{ sku: "A-1", quantity: "2", unit_price: 9.5 }] });',
        "error TS2322: Type 'string' is not assignable to type 'number'.",
    ),
    "a value outside an enum": (
        'await addJob(queue, "RefundPayment", { invoice_id: "1", amount: 5, reason: "bored" });',
        'Type \'"bored"\' is not assignable to type \'"duplicate" | "fraud" | "requested"',
    ),
    "an unknown job": (
        'await addJob(queue, "SendInvoices", {});',
        "is not assignable to parameter of type 'keyof Jobs'.",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PRODUCERS))
def test_a_producer_that_breaks_the_contract_does_not_compile(tmp_path: Path, case: str) -> None:
    call, error = BAD_PRODUCERS[case]
    source = (
        'import { Queue } from "bullmq";\n\nimport { addJob } from "./jobs.js";\n\n'
        f'const queue = new Queue("billing");\n{call}\nawait queue.close();\n'
    )
    directory = project(tmp_path, {"jobs.ts": example_jobs_ts(), "bad.ts": source})
    result = compile_ts(directory)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "bad.ts(" in result.stdout and error in result.stdout, result.stdout


#: Uses every type of tests/contracts_types.py as Node would: data written, results read.
CATALOG_USE = """\
import type { Jobs } from "./jobs.js";

type Data<N extends keyof Jobs> = Jobs[N]["data"];
type Result<N extends keyof Jobs> = Jobs[N]["result"];

const address: Data<"AddressJob"> = { city: "Oslo" };
const customer: Data<"CustomerJob"> = {
  name: "Ada", id: "123e4567-e89b-12d3-a456-426614174000", seen: new Date().toISOString(),
  address, level: 2, tags: { a: 1 }, born: null, pair: [1, "x"], referrer: null,
};
const shape: Data<"ShapeJob"> = { kind: "circle", center: { x: 1, y: 2 }, label: null, color: "red" };
const everything: Data<"EverythingJob"> = {
  customer, shapes: [shape], points: { p: { x: 0, y: 0 } }, colors: ["a", "a"], mode: 1,
};
const scalars: [Data<"IntJob">, Data<"OptionalJob">, Data<"UnionJob">, Data<"LiteralJob">,
  Data<"NullJob">, Data<"TupleJob">, Data<"DateTimeJob">, Data<"Untyped">] =
  [1, null, "s", "b", null, [1, "t"], "2026-12-05T10:00:00Z", { any: ["thing"] }];

declare const sent: Result<"CustomerJob">;
const zip: string | null = sent.address.zip; // present in a result, maybe null
const lines: string[] = sent.address.lines;
const level: 1 | 2 = sent.level;
const referrer: Result<"CustomerJob"> | null = sent.referrer;
declare const all: Result<"EverythingJob">;
const colors: string[] = all.colors;
const anything: unknown = all.anything;
console.log(everything, scalars, zip, lines, level, referrer, colors, anything);
"""


def test_the_types_of_every_supported_python_type_compile(tmp_path: Path) -> None:
    jobs_ts = render_typescript(build_contract(catalog, "default"))
    directory = project(tmp_path, {"jobs.ts": jobs_ts, "use.ts": CATALOG_USE})
    result = compile_ts(directory)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ajv_gives_the_verdicts_of_python_jsonschema(tmp_path: Path) -> None:
    """Values near every supported type, valid and not, judged by ajv and by jsonschema."""
    from tests.test_contracts_roundtrip import adapter, mutated, values

    contract = build_contract(catalog, "default")
    schemas = {
        f"{name}:{which}": getattr(job, which)
        for name, job in contract.jobs.items()
        for which in ("data", "result")
    }
    samples: list[tuple[str, Any]] = []

    @settings(max_examples=40, deadline=None, database=None)
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        case = data.draw(st.sampled_from(sorted(CASES)))
        which = data.draw(st.sampled_from(["data", "result"]))
        wire = adapter(f"{case}Job", which).dump_python(data.draw(values(CASES[case])), mode="json")
        samples.append((f"{case}Job:{which}", wire))
        samples.append((f"{case}Job:{which}", mutated(data, wire)))

    collect()
    samples = json.loads(json.dumps(samples))
    expected = [Draft202012Validator(schemas[key]).is_valid(value) for key, value in samples]
    assert True in expected and False in expected
    spec = tmp_path / "samples.json"
    spec.write_text(json.dumps({"schemas": schemas, "samples": samples}))
    proc = run_node(["validate.mjs", str(spec)])
    assert proc["stderr"] == "", proc["stderr"]  # no strict-mode warning
    mismatches = [
        (key, value, want)
        for (key, value), want, got in zip(samples, expected, proc["verdicts"], strict=True)
        if want != got
    ]
    assert mismatches == []


def run_node(args: list[str]) -> dict[str, Any]:
    """Run a tests/node script; its JSON line, with its stderr."""
    out = subprocess.run(
        [node(), *args], cwd=ROOT / "tests" / "node", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "stderr": out.stderr}
