import { defineConfig } from 'vitest/config';

/** `pnpm bench`: deploy and CLI start-up against the Nix tools on lab hosts (needs root; not a timed test). */
export default defineConfig({
  test: { include: ['bench/**/*.bench.ts'], testTimeout: 1_800_000, hookTimeout: 600_000, pool: 'forks', reporters: ['verbose'] },
});
