import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll } from 'vitest';

/** The directories made by {@link temporaryDirectory} in the importing test file. */
const created: string[] = [];

// Registered while the importing test file is collected (vitest evaluates this module afresh for
// each file): a hook registered later, from inside a running test, would never run.
afterAll(() => {
  for (const directory of created.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/**
 * A temporary directory for one test file (`mkdtempSync(prefix)`), removed with all the others of
 * that file once its tests are done.
 */
export function temporaryDirectory(prefix: string): string {
  const directory = mkdtempSync(prefix);
  created.push(directory);
  return directory;
}
