// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const STAGES = ['pin', 'build', 'bundle', 'transport', 'activate', 'keys'];

/** Imports every package may never use: other packages' sources and internals. */
const noDeepImports = {
  group: ['@pideploy/*/src', '@pideploy/*/src/*', '@pideploy/*/dist/*', '../../packages/*', '../../apps/*', '../../../*'],
  message: 'import another package through its name and exports map, never its files',
};

/**
 * @param {string[]} forbiddenPackages gitignore-style globs of @pideploy packages this one may not import
 * @param {string[]} forbiddenModules npm modules this package may not import
 */
function restrict(forbiddenPackages, forbiddenModules = []) {
  const message = 'this import crosses a package boundary of DESIGN.md §2 (core ← nix, ssh ← stages ← sdk ← cli; execa only in nix and lab; ssh2 only in ssh)';
  return {
    'no-restricted-imports': [
      'error',
      {
        paths: forbiddenModules.map((name) => ({ name, message })),
        patterns: [noDeepImports, ...(forbiddenPackages.length > 0 ? [{ group: forbiddenPackages, message }] : [])],
      },
    ],
  };
}

/** Package directory → rules of what it may import (DESIGN.md §2: core ← nix, ssh ← stages ← sdk ← cli). */
const boundaries = [
  { files: ['packages/core/**'], rules: restrict(['@pideploy/*'], ['execa', 'ssh2']) },
  { files: ['packages/nix/**'], rules: restrict(['@pideploy/*', '!@pideploy/core'], ['ssh2']) },
  { files: ['packages/ssh/**'], rules: restrict(['@pideploy/*', '!@pideploy/core'], ['execa']) },
  ...STAGES.map((stage) => ({
    files: [`packages/${stage}/**`],
    rules: restrict(
      STAGES.filter((other) => other !== stage).map((other) => `@pideploy/${other}`).concat(['@pideploy/sdk', '@pideploy/cli', '@pideploy/lab']),
      ['execa', 'ssh2'],
    ),
  })),
  { files: ['packages/lab/**'], rules: restrict(['@pideploy/*', '!@pideploy/core', '!@pideploy/nix', '!@pideploy/ssh'], ['ssh2']) },
  { files: ['apps/sdk/**'], rules: restrict(['@pideploy/cli'], ['execa', 'ssh2']) },
  { files: ['apps/cli/**'], rules: restrict([], ['execa', 'ssh2']) },
];

export default tseslint.config(
  { ignores: ['**/dist/**', '**/.tsc/**', '**/node_modules/**', '**/.turbo/**', '**/fixture/**', '**/src/generated/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', NodeJS: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', fetch: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
    },
  },
  ...boundaries,
  // Tests may use whatever they need to observe real behaviour (processes included).
  { files: ['**/*.test.ts', '**/test-support/**', '**/*.bench.ts', '**/bench/**', 'scripts/**', '*.config.ts', '**/*.config.ts', 'vitest.shared.ts'], rules: { 'no-restricted-imports': 'off', 'no-console': 'off' } },
  { files: ['apps/cli/src/bin.ts', 'packages/lab/src/archive-server/main.ts'], rules: { 'no-console': 'off' } },
);
