#!/usr/bin/env node
// Adds up the vitest JSON reports of every package (written by the last `pnpm test`) and prints
// one closing line, "Tests: N passed, N failed, N skipped", plus the failing tests' names.
// Exits 1 when a test failed, when a package wrote no report, or when no test ran at all.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const workspaces = ['.', ...['packages', 'apps'].flatMap((group) =>
  existsSync(path.join(root, group)) ? readdirSync(path.join(root, group)).map((name) => path.join(group, name)) : [],
)];
let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
const missing = [];
for (const workspace of workspaces) {
  const hasTests = workspace === '.' || existsSync(path.join(root, workspace, 'vitest.config.ts'));
  if (!hasTests) continue;
  const reportFile = path.join(root, workspace, '.vitest', 'report.json');
  if (!existsSync(reportFile)) {
    missing.push(workspace);
    continue;
  }
  const report = JSON.parse(readFileSync(reportFile, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + (report.numTodoTests ?? 0);
  for (const file of report.testResults) {
    for (const test of file.assertionResults) {
      if (test.status === 'failed') failures.push(`${path.relative(root, file.name)} > ${test.fullName}`);
    }
  }
}
for (const failure of failures) console.log(`FAILED ${failure}`);
if (missing.length > 0) console.log(`no test report from: ${missing.join(', ')}`);
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 || missing.length > 0 || passed === 0 ? 1 : 0;
