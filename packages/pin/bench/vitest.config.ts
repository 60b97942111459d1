import { defineConfig } from 'vitest/config';

/** `pnpm bench`: timings against the real tools in the same run (not a timed test). */
export default defineConfig({
  test: {
    include: ['bench/**/*.bench.ts'],
    testTimeout: 600_000,
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
  },
});
