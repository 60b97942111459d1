import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * Test support (not part of the package API): where the shared reference material lives.
 * The repo is cloned next to `shared/` (locally /work/main next to /work/shared; in CI the
 * clone's parent holds `shared/`), so it is `<repo root>/../shared`. PIDEPLOY_SHARED_DIR overrides.
 */

/** Root of this repository (packages/nix/src/test-support → four levels up). */
export const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** The shared reference directory; throws a clear error when it is missing. */
export function sharedDir(): string {
  const candidate = process.env['PIDEPLOY_SHARED_DIR'] ?? path.resolve(REPO_ROOT, '..', 'shared');
  if (!existsSync(path.join(candidate, 'reference', 'vectors', 'expected.json'))) {
    throw new Error(
      `shared reference vectors not found at ${candidate}/reference/vectors (expected the shared/ directory next to the repo clone at ${path.resolve(REPO_ROOT, '..')}; set PIDEPLOY_SHARED_DIR to override)`,
    );
  }
  return candidate;
}

/** `<shared>/reference/vectors`. */
export function vectorsDir(): string {
  return path.join(sharedDir(), 'reference', 'vectors');
}

/** Shape of the parts of expected.json these tests read. */
export interface ExpectedVectors {
  base32: Record<string, { input_utf8?: string; hex: string; nix32: string; sri: string }>;
  nar: Record<string, { nix32: string; hex: string; sri: string; narSize: number }>;
  tarball: Record<string, { nixPrefetchUrlUnpack: string; sri?: string; narSize?: number; fetchTarball2_8?: { result?: string; error?: string } }>;
  storePath: Record<string, { method: 'recursive' | 'flat'; nix32: string; name: string; path: string }>;
  gcrootAutoName: Record<string, string>;
  base32_other_types_of_empty_string: Record<string, { hex: string; nix32: string; len: number }>;
}

/** Parsed `expected.json` (keys starting with `_` are comments). */
export function expectedVectors(): ExpectedVectors {
  const raw = JSON.parse(readFileSync(path.join(vectorsDir(), 'expected.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  const withoutComments = Object.fromEntries(
    Object.entries(raw).map(([key, value]) => [
      key,
      typeof value === 'object' && value !== null ? Object.fromEntries(Object.entries(value).filter(([inner]) => !inner.startsWith('_'))) : value,
    ]),
  );
  return withoutComments as unknown as ExpectedVectors;
}
