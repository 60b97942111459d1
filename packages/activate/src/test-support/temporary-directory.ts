import { mkdtempSync, rmSync } from 'node:fs';
import { afterAll } from 'vitest';

/**
 * A temporary directory for one test file (`mkdtempSync(prefix)`), removed with all the others of
 * that file once its tests are done. Call it from tests or helpers, not at module load.
 */
const created: string[] = [];
let registered = false;

export function temporaryDirectory(prefix: string): string {
  if (!registered) {
    registered = true;
    afterAll(() => {
      for (const directory of created.splice(0)) rmSync(directory, { recursive: true, force: true });
      registered = false;
    });
  }
  const directory = mkdtempSync(prefix);
  created.push(directory);
  return directory;
}
