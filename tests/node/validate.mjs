// Validate JSON values against JSON Schemas with ajv (draft 2020-12, strict mode), as a Node
// producer does with the schemas of `bullworker contracts export` (tests/integration/test_contracts_node.py).
//
// Argument: a JSON file {"schemas": {"<key>": <schema>}, "samples": [["<key>", <value>], ...]}.
// Prints {"verdicts": [true | false, ...]}, one per sample, in order. Formats are annotations
// (the exported schemas check dates with patterns), so ajv's format validators are off.
import { readFileSync } from 'node:fs';

import { Ajv2020 } from 'ajv/dist/2020.js';

import { finish } from './common.mjs';

const { schemas, samples } = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const ajv = new Ajv2020({ strict: true, validateFormats: false });
const compiled = Object.fromEntries(
  Object.entries(schemas).map(([key, schema]) => [key, ajv.compile(schema)]),
);
finish({ verdicts: samples.map(([key, value]) => compiled[key](value)) });
