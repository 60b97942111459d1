import { defineConfig, type UserConfig } from 'vitest/config';

/**
 * The vitest setup every package shares: a `unit` project (pure code, fakes allowed, runs in
 * parallel) and a `lab` project (`*.lab.test.ts`: real nix, sshd, sudo, namespaces; one file at a
 * time, after the unit project, because every lab test shares the one lab).
 */
export function defineProject(): UserConfig {
  return defineConfig({
    test: {
      // The JSON report feeds the one-line total that `./dev test` prints at the end.
      reporters: ['default', 'json'],
      outputFile: { json: '.vitest/report.json' },
      projects: [
        {
          extends: true,
          test: {
            name: 'unit',
            include: ['src/**/*.test.ts'],
            exclude: ['src/**/*.lab.test.ts', 'node_modules/**', 'dist/**'],
            // Some unit tests run real shells (dash and bash) dozens of times; on a 2-core machine
            // running every package's unit tests at once they need more than vitest's 5 s.
            testTimeout: 30_000,
            sequence: { groupOrder: 0 },
          },
        },
        {
          extends: true,
          test: {
            name: 'lab',
            include: ['src/**/*.lab.test.ts'],
            pool: 'forks',
            poolOptions: { forks: { singleFork: true } },
            fileParallelism: false,
            testTimeout: 180_000,
            hookTimeout: 600_000,
            sequence: { groupOrder: 1 },
          },
        },
      ],
    },
  });
}
