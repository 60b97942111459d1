import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labLocalNixEnv } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { beforeAll, expect, it } from 'vitest';
import { diffClosures, formatClosureDiff, type ClosurePath } from './closure-diff.js';
import { parseGenerationList, previousGeneration } from './generations.js';

const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-activate-'));
const env = { ...process.env, ...labLocalNixEnv(path.join(workDir, 'cache')) };
const nix = (args: string[]) => execFileSync(args[0]!, args.slice(1), { env, encoding: 'utf8' });

/**
 * A toplevel-like closure: each package is a derivation whose output size is chosen, and the top
 * references them all (so they are in its closure), as a system's closure references its packages.
 */
function systemExpression(label: string, packages: readonly (readonly [string, number])[]): string {
  const drv = (name: string, bytes: number) =>
    `derivation { name = "${name}"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" "head -c ${bytes} /dev/zero | tr '\\\\0' x > $out" ]; }`;
  const references = packages.map(([name, bytes]) => `\${${drv(name, bytes)}}`).join(' ');
  return `derivation { name = "nixos-system-pi-${label}"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" "echo ${references} > $out" ]; }`;
}

function build(expression: string): string {
  return nix(['nix-build', '--no-out-link', '-E', expression]).trim();
}

/** The closure with NAR sizes, read from the real local store. */
function closureOf(storePath: string): ClosurePath[] {
  const info = JSON.parse(nix(['nix', 'path-info', '--json', '--recursive', storePath])) as { path: string; narSize: number }[];
  return info.map(({ path: itemPath, narSize }) => ({ path: itemPath, narSize }));
}

describeLab('closure diffs and generations against real Nix', () => {
  let before = '';
  let after = '';
  beforeAll(() => {
    before = build(systemExpression('24.05-lab', [['hello-2.12', 40_000], ['cowsay-3.7', 30_000], ['tzdata-2024a', 9_000], ['etc', 1_000], ['man-db-2.12.0-man', 12_000]]));
    after = build(systemExpression('24.11-lab', [['hello-2.13', 52_000], ['figlet-2.2.5', 20_000], ['tzdata-2024a', 9_000], ['etc', 3_000], ['man-db-2.12.1-man', 12_100]]));
  });

  it('prints exactly what `nix store diff-closures` prints for the same two systems', () => {
    // eslint-disable-next-line no-control-regex -- strip the ANSI colours Nix prints
    const expected = nix(['nix', 'store', 'diff-closures', before, after]).replace(/\u001b\[[0-9;]*m/gu, '');
    const ours = formatClosureDiff(diffClosures(closureOf(before), closureOf(after)));
    expect(ours).toBe(expected);
    expect(ours).toContain('hello: 2.12 → 2.13');
  });

  it('parses the generations real nix-env lists and picks the generation --rollback picks', () => {
    const profile = path.join(workDir, 'profiles', 'system');
    execFileSync('mkdir', ['-p', path.dirname(profile)]);
    nix(['nix-env', '-p', profile, '--set', before]);
    nix(['nix-env', '-p', profile, '--set', after]);
    const generations = parseGenerationList(nix(['nix-env', '-p', profile, '--list-generations']));
    expect(generations.map((generation) => [generation.number, generation.current])).toEqual([
      [1, false],
      [2, true],
    ]);
    const target = previousGeneration(generations);
    nix(['nix-env', '-p', profile, '--rollback']);
    const afterRollback = parseGenerationList(nix(['nix-env', '-p', profile, '--list-generations']));
    expect(afterRollback.find((generation) => generation.current)?.number).toBe(target?.number);
  });
});
