import { defineConfig, type Options } from 'tsup';

/** The tsup build every package shares: ESM + .d.ts for Node 20; `entries[0]` is the typed public entry. */
export function definePackageBuild(entries: readonly string[], overrides: Options = {}) {
  return defineConfig({
    entry: [...entries],
    format: ['esm'],
    // composite (for `tsc -b`) and tsup's d.ts build do not mix: turn it off for the d.ts pass only.
    dts: { entry: entries[0], compilerOptions: { composite: false, emitDeclarationOnly: false } },
    clean: true,
    target: 'node20',
    sourcemap: true,
    ...overrides,
  });
}
