import { defineConfig } from 'vitest/config';

/** `pnpm bench`: key upload vs OpenSSH doing it the way colmena does, on a lab host (needs root; not a timed test). */
export default defineConfig({
  test: { include: ['bench/**/*.bench.ts'], testTimeout: 900_000, hookTimeout: 600_000, pool: 'forks', reporters: ['verbose'] },
});
