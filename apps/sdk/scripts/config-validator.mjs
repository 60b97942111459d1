// Renders the validator of pideploy.json from pideploy.schema.json as plain ESM code (ajv's
// standalone mode), so that loading a config does not load and run ajv's compiler (about 180 ms
// of every command's start on a slow 2-CPU VM). `pnpm --filter @pideploy/sdk generate` writes it;
// a unit test fails when the committed file is not what this renders.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';

/** The schema the validator is made from. */
export const schemaFile = fileURLToPath(new URL('../pideploy.schema.json', import.meta.url));
/** The committed, generated validator. */
export const generatedFile = fileURLToPath(new URL('../src/generated/validate-config.js', import.meta.url));

/** The validator's module text (ajv, `allErrors`, as config.ts used to compile it at start-up). */
export function renderConfigValidator() {
  const schema = JSON.parse(readFileSync(schemaFile, 'utf8'));
  // `unicode: false` counts string lengths in UTF-16 units, so the code needs none of ajv's runtime
  // helpers (it refers to them with require(), which an ES module does not have). The schema's only
  // length rules are `minLength: 1`, which a string meets either way exactly when it is not empty.
  // (ajv 8 still honours the option, and says it is deprecated: that one notice is not passed on.)
  const toStderr = (...parts) => void process.stderr.write(`${parts.join(' ')}\n`);
  const logger = { log: toStderr, error: toStderr, warn: (...parts) => void (String(parts[0]).includes('option unicode') || toStderr(...parts)) };
  const ajv = new Ajv({ allErrors: true, strict: false, unicode: false, logger, code: { source: true, esm: true } });
  const code = standaloneCode(ajv, ajv.compile(schema));
  if (code.includes('require(')) {
    throw new Error('the generated validator needs ajv runtime code (require): the schema uses a rule that the standalone ESM module cannot carry; change the schema or this script');
  }
  const header = '// Generated from pideploy.schema.json by scripts/config-validator.mjs (pnpm --filter @pideploy/sdk generate). Do not edit.';
  return `${header}\n${code.replace(/^"use strict";/u, '')}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) writeFileSync(generatedFile, renderConfigValidator());
