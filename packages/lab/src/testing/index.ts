import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'vitest';

/**
 * Test helpers for lab tests (`*.lab.test.ts`) of every pideploy package
 * (`import { describeLab } from '@pideploy/lab/testing'`).
 */

const REQUIRED_TOOLS = ['nix-build', 'nix-store', 'sshd', 'ssh', 'sudo', 'ip', 'unshare', 'nsenter', 'qemu-aarch64-static'];

/** Why lab tests cannot run here, or undefined when everything they need is present. */
export function missingLabPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'lab tests need root (namespaces, sshd, sudo, binfmt_misc)';
  const searchPath = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  for (const tool of REQUIRED_TOOLS) {
    const found = searchPath.some((directory) => {
      try {
        accessSync(path.join(directory, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) return `lab tests need ${tool} (run .ci/run or ./dev setup to install the lab's packages)`;
  }
  return undefined;
}

/**
 * `describe` for lab tests. Where the lab cannot run: skipped on a developer machine, but a
 * FAILURE under CI (`CI=true`), because a lab test skipped in CI proves nothing.
 */
export function describeLab(name: string, body: () => void): void {
  const missing = missingLabPrerequisite();
  if (missing === undefined) {
    describe(name, body);
    return;
  }
  if (process.env['CI'] !== undefined && process.env['CI'] !== '' && process.env['CI'] !== 'false') {
    describe(name, () => {
      // A lab test that cannot run in CI is a failing test, never a skipped one.
      it(`cannot run: ${missing}`, () => {
        throw new Error(`lab test "${name}" cannot run in CI: ${missing}`);
      });
    });
    return;
  }
  describe.skip(`${name} (skipped: ${missing})`, body);
}

