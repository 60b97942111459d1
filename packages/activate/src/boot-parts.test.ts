import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bootPartsChanged, parseBootParts, printBootPartsScript, readLocalBootParts } from './boot-parts.js';

/** A system directory with the given links (and the files they point to). */
function systemWith(parts: Record<string, string>): string {
  const system = mkdtempSync(path.join(os.tmpdir(), 'pideploy-system-'));
  mkdirSync(path.join(system, 'bin'));
  writeFileSync(path.join(system, 'nixos-version'), '24.05');
  for (const [name, target] of Object.entries(parts)) symlinkSync(target, path.join(system, name));
  return system;
}

const runScript = (shell: string, system: string) => {
  const result = spawnSync(shell, ['-c', printBootPartsScript('"$1"'), 'probe', system], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  expect(result.status).toBe(0);
  return result.stdout.split('\n');
};

describe('boot parts (kernel, initrd, kernel-modules)', () => {
  for (const shell of ['dash', 'bash']) {
    it(`${shell}: the script prints each link a system has (through a link to the system), nothing else, and nothing for a missing system`, () => {
      const system = systemWith({ kernel: '/nix/store/aaaa-linux-6.6-Image', 'kernel-modules': '/nix/store/bbbb-linux-6.6-modules' });
      const linked = path.join(mkdtempSync(path.join(os.tmpdir(), 'pideploy-run-')), 'booted-system');
      symlinkSync(system, linked);
      const lines = runScript(shell, linked);
      expect(parseBootParts(lines)).toEqual({ kernel: '/nix/store/aaaa-linux-6.6-Image', initrd: undefined, 'kernel-modules': '/nix/store/bbbb-linux-6.6-modules' });
      expect(lines.filter((line) => line !== '').sort()).toEqual(['boot-part kernel /nix/store/aaaa-linux-6.6-Image', 'boot-part kernel-modules /nix/store/bbbb-linux-6.6-modules', 'boot-system']);
      expect(parseBootParts(runScript(shell, path.join(linked, 'missing')))).toBeUndefined();
      expect(parseBootParts(runScript(shell, systemWith({})))).toEqual({ kernel: undefined, initrd: undefined, 'kernel-modules': undefined });
    });
  }

  it('reads the links of a system here as the host reads them (the link text)', () => {
    const system = systemWith({ kernel: '/nix/store/aaaa-linux-6.6-Image', initrd: '/nix/store/cccc-initrd-linux-6.6/initrd' });
    expect(readLocalBootParts(system)).toEqual({ kernel: '/nix/store/aaaa-linux-6.6-Image', initrd: '/nix/store/cccc-initrd-linux-6.6/initrd', 'kernel-modules': undefined });
  });

  it('names the parts that differ from what the host booted with; none when that is unknown', () => {
    const booted = { kernel: '/nix/store/a-Image', initrd: '/nix/store/b-initrd', 'kernel-modules': '/nix/store/c-modules' };
    expect(bootPartsChanged(booted, booted)).toEqual([]);
    expect(bootPartsChanged(booted, { ...booted, initrd: '/nix/store/d-initrd' })).toEqual(['initrd']);
    expect(bootPartsChanged(booted, { kernel: undefined, initrd: undefined, 'kernel-modules': undefined })).toEqual(['kernel', 'initrd', 'kernel-modules']);
    expect(bootPartsChanged(undefined, booted)).toEqual([]);
  });
});
