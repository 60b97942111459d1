import { defineConfig } from 'vitest/config';

/** `pnpm bench`: pideploy's overhead on a no-change build vs plain nix-build (lab, real nix). */
export default defineConfig({
  test: { include: ['bench/**/*.bench.ts'], testTimeout: 600_000, hookTimeout: 600_000, pool: 'forks', fileParallelism: false },
});
