import { defineConfig } from 'vitest/config';

/** Repository-level tests (lint rules, workspace shape); each package has its own vitest config. */
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], reporters: ['default', 'json'], outputFile: { json: '.vitest/report.json' } },
});
