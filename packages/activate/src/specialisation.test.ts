import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { describe, expect, it } from 'vitest';
import { checkSpecialisationUse, isSpecialisationName, parseRunningSpecialisation, printRunningSpecialisationScript, specialisationSystem, specialisationsOf } from './specialisation.js';
import { temporaryDirectory } from './test-support/temporary-directory.js';

/** A system directory as NixOS builds one: bin/switch-to-configuration and specialisation/<name> links to other such systems. */
function makeSystem(root: string, name: string, specialisations: Readonly<Record<string, string>> = {}): string {
  const system = path.join(root, name);
  mkdirSync(path.join(system, 'bin'), { recursive: true });
  writeFileSync(path.join(system, 'bin', 'switch-to-configuration'), '#!/bin/sh\n', { mode: 0o755 });
  mkdirSync(path.join(system, 'specialisation'));
  for (const [child, target] of Object.entries(specialisations)) symlinkSync(target, path.join(system, 'specialisation', child));
  return system;
}

function thrown(run: () => void): PideployError {
  try {
    run();
  } catch (error) {
    if (PideployError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('nothing was thrown');
}

describe('isSpecialisationName', () => {
  it('takes a file name, including spaces and dots; not a path, . or .., nor an empty one', () => {
    for (const name of ['maintenance', 'kiosk mode', 'v1.2', '-odd']) expect(isSpecialisationName(name)).toBe(true);
    for (const name of ['', '.', '..', 'a/b', '/abs', 'a\nb', 'a\0b']) expect(isSpecialisationName(name)).toBe(false);
  });
});

describe('checkSpecialisationUse', () => {
  it('lets switch, test and dry-activate through, and anything without a specialisation', () => {
    for (const action of ['switch', 'test', 'dry-activate'] as const) expect(() => checkSpecialisationUse({ action, specialisation: 'kiosk' })).not.toThrow();
    expect(() => checkSpecialisationUse({ action: 'boot', specialisation: undefined, reboot: true })).not.toThrow();
  });

  it('refuses boot, a reboot and a name that is no file name, each with a hint', () => {
    const boot = thrown(() => checkSpecialisationUse({ action: 'boot', specialisation: 'kiosk' }));
    expect(boot.code).toBe('PIDEPLOY_USAGE');
    expect(boot.message).toBe('--specialisation with --action boot: a boot starts the system itself, not one of its specialisations');
    expect(boot.hint).toContain('--action switch or test');
    expect(thrown(() => checkSpecialisationUse({ action: 'switch', specialisation: 'kiosk', reboot: true })).message).toContain('--specialisation with --reboot: the host would boot the system itself');
    expect(thrown(() => checkSpecialisationUse({ action: 'switch', specialisation: 'kiosk', reboot: 'if-needed' })).message).toContain('--reboot-if-needed');
    expect(thrown(() => checkSpecialisationUse({ action: 'switch', specialisation: '../x' })).message).toBe('--specialisation "../x" is not a specialisation name');
  });
});

describe('specialisationSystem / specialisationsOf', () => {
  it('passes a specialisation the system has; names those it has otherwise', () => {
    const directory = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-specialisation-'));
    const kiosk = makeSystem(directory, 'kiosk');
    const maintenance = makeSystem(directory, 'maintenance');
    const system = makeSystem(directory, 'system', { maintenance, kiosk });
    expect(specialisationsOf(system)).toEqual(['kiosk', 'maintenance']);
    // The specialisation's own system, resolved (what the host will run).
    expect(specialisationSystem(system, 'kiosk', 'pi1')).toBe(kiosk);
    const unknown = thrown(() => specialisationSystem(system, 'kisok', 'pi1'));
    expect(unknown.code).toBe('PIDEPLOY_SPECIALISATION_UNKNOWN');
    expect(unknown.message).toBe(`pi1's system ${system} has no specialisation "kisok"`);
    expect(unknown.hint).toBe('it has "kiosk", "maintenance": pick one of them, or add `specialisation."kisok".configuration` to the configuration');
  });

  it('says so when the configuration defines none (or the path is no system)', () => {
    const directory = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-specialisation-'));
    const plain = makeSystem(directory, 'plain');
    expect(specialisationsOf(plain)).toEqual([]);
    expect(thrown(() => specialisationSystem(plain, 'kiosk')).hint).toContain('defines no `specialisation.<name>`');
    expect(specialisationsOf(path.join(directory, 'absent'))).toEqual([]);
  });
});

describe('printRunningSpecialisationScript (run by a real sh)', () => {
  const runningSpecialisation = (running: string, profile: string) => {
    const script = `running=$1; profile=$2\n${printRunningSpecialisationScript('running', 'profile')}`;
    return parseRunningSpecialisation(execFileSync('sh', ['-c', script, 'probe', running, profile], { encoding: 'utf8' }).split('\n'));
  };

  it('names the specialisation of the profile\'s system that runs, by its resolved path', () => {
    const directory = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-specialisation-'));
    const kiosk = makeSystem(directory, 'kiosk');
    const other = makeSystem(directory, 'other');
    const system = makeSystem(directory, 'system', { 'kiosk mode': kiosk });
    expect(runningSpecialisation(kiosk, system)).toBe('kiosk mode');
    expect(runningSpecialisation(system, system)).toBeUndefined();
    expect(runningSpecialisation(other, system)).toBeUndefined();
    expect(runningSpecialisation('', system)).toBeUndefined();
    expect(runningSpecialisation(kiosk, '')).toBeUndefined();
  });
});
