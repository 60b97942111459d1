import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of this repository (packages/transport/src/test-support → four levels up). */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

/** `<shared>/reference/vectors` (the shared/ directory next to the clone, or $PIDEPLOY_SHARED_DIR). */
export function vectorsDir(): string {
  const shared = process.env['PIDEPLOY_SHARED_DIR'] ?? path.resolve(REPO_ROOT, '..', 'shared');
  const dir = path.join(shared, 'reference', 'vectors');
  if (!existsSync(path.join(dir, 'serve'))) throw new Error(`serve protocol vectors not found in ${dir} (set PIDEPLOY_SHARED_DIR)`);
  return dir;
}

/** Reads a vector file as bytes, e.g. `serve/copy-to.client-to-server.bin`. */
export function readVector(name: string): Buffer {
  return readFileSync(path.join(vectorsDir(), name));
}
