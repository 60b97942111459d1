import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureStateDir, projectStateDir } from './nix-cli.js';

describe('ensureStateDir', () => {
  it('makes the directory and a .gitignore that keeps all of it out of git (a real git)', async () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-state-'));
    const stateDir = projectStateDir(project);
    const keys = await ensureStateDir(stateDir, 'cache-key');
    expect(keys).toBe(path.join(stateDir, 'cache-key'));
    expect(statSync(keys).isDirectory()).toBe(true);
    writeFileSync(path.join(keys, 'pideploy-deployer-1.secret'), 'secret');
    writeFileSync(path.join(project, 'configuration.nix'), '{ }');
    execFileSync('git', ['init', '-q', project]);
    execFileSync('git', ['-C', project, 'add', '-A']);
    expect(execFileSync('git', ['-C', project, 'diff', '--cached', '--name-only'], { encoding: 'utf8' }).trim().split('\n')).toEqual(['configuration.nix']);
  });

  it('leaves a .gitignore that is already there alone', async () => {
    const stateDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'pideploy-state-')), '.pideploy');
    await ensureStateDir(stateDir);
    writeFileSync(path.join(stateDir, '.gitignore'), 'gcroots\n');
    await ensureStateDir(stateDir, 'gcroots');
    expect(readFileSync(path.join(stateDir, '.gitignore'), 'utf8')).toBe('gcroots\n');
  });
});
