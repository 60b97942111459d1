import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKeySpecs, keySpecProblem, type KeySpec } from './key-spec.js';
import { readKeyContents } from './read-keys.js';

// Every test's directory is made under one root, removed once this file's tests are done.
const scratch = mkdtempSync(path.join(os.tmpdir(), 'pideploy-key-sources-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const temporaryDirectory = (prefix: string) => mkdtempSync(path.join(scratch, path.basename(prefix)));

function key(name: string, source: KeySpec['source'], fields: Partial<KeySpec> = {}): KeySpec {
  return { name, source, destDir: '/run/keys', user: 'root', group: 'root', permissions: '0600', uploadAt: 'pre-activation', ...fields };
}

async function failure(work: Promise<unknown>): Promise<PideployError> {
  const error = await work.then(() => undefined, (caught: unknown) => caught);
  if (!PideployError.isInstance(error)) throw new Error(`expected a PideployError, got ${String(error)}`);
  return error;
}

describe('readKeyContents', () => {
  it('reads files as bytes and commands by their stdout (run with the cwd given), each source once', async () => {
    const dir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-key-sources-'));
    writeFileSync(path.join(dir, 'psk'), Buffer.from([0, 200, 10]));
    const counter = path.join(dir, 'runs');
    // The command counts its runs in a file of the working directory: two keys naming it run it once.
    const command = ['sh', '-c', 'echo run >> runs; printf "tok\\nen"'];
    const loaded = await readKeyContents([key('a', { file: path.join(dir, 'psk') }), key('b', { command }), key('c', { command }, { destDir: '/srv' })], { cwd: dir });
    expect(loaded.map((item) => [item.spec.name, Buffer.from(item.content).toString('hex')])).toEqual([
      ['a', '00c80a'],
      ['b', Buffer.from('tok\nen').toString('hex')],
      ['c', Buffer.from('tok\nen').toString('hex')],
    ]);
    expect(readFileSync(counter, 'utf8')).toBe('run\n');
  });

  it('a missing file or a failing command is one error naming the key and the source, never the command\'s stdout', async () => {
    const dir = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-key-sources-'));
    const missing = await failure(readKeyContents([key('wifi', { file: path.join(dir, 'nope') })]));
    expect(missing.code).toBe('PIDEPLOY_KEY_SOURCE_FAILED');
    expect(missing.message).toBe(`key wifi: cannot read the key file ${path.join(dir, 'nope')}: ENOENT`);
    expect(missing.hint).toContain('create it');
    const failed = await failure(readKeyContents([key('token', { command: ['sh', '-c', 'printf "%s-%s" half secret; echo "vault is locked" >&2; exit 3'] })]));
    expect(failed.code).toBe('PIDEPLOY_KEY_SOURCE_FAILED');
    expect(failed.message).toMatch(/^key token: the key command sh -c .* exited 3: vault is locked$/u);
    expect(JSON.stringify({ message: failed.message, hint: failed.hint, commandFailure: failed.commandFailure })).not.toContain('half-secret');
    const absent = await failure(readKeyContents([key('x', { command: ['pideploy-no-such-program'] })]));
    expect(absent.code).toBe('PIDEPLOY_MISSING_TOOL');
  });
});

describe('keySpecProblem / checkKeySpecs', () => {
  it('refuses names, places, owners and modes that cannot be installed as given', () => {
    const file = { file: '/k' };
    expect(keySpecProblem(key('wifi.psk', file))).toBeUndefined();
    expect(keySpecProblem(key('../etc', file))).toMatch(/not a plain file name/u);
    expect(keySpecProblem(key('.hidden', file))).toMatch(/not a plain file name/u);
    expect(keySpecProblem(key('k', file, { destDir: 'run/keys' }))).toMatch(/not an absolute path/u);
    expect(keySpecProblem(key('k', file, { destDir: '/run/../etc' }))).toMatch(/\.\. segment/u);
    expect(keySpecProblem(key('k', file, { destDir: '/nix/store/abc' }))).toMatch(/Nix store/u);
    expect(keySpecProblem(key('k', file, { user: 'a b' }))).toMatch(/not a user name/u);
    expect(keySpecProblem(key('k', file, { group: 'x;y' }))).toMatch(/not a group name/u);
    expect(keySpecProblem(key('k', file, { permissions: '4755' }))).toMatch(/not an octal mode/u);
    expect(keySpecProblem(key('k', file, { permissions: '640' }))).toBeUndefined();
    expect(keySpecProblem(key('k', { command: [] }))).toMatch(/command is empty/u);
  });

  it('refuses two keys landing on the same path', () => {
    expect(() => checkKeySpecs('pi1', [key('k', { file: '/a' }), key('k', { file: '/b' }, { destDir: '/run/keys/' })])).toThrow(/pi1: keys k and k both land at \/run\/keys\/k/u);
    expect(() => checkKeySpecs('pi1', [key('k', { file: '/a' }), key('k', { file: '/b' }, { destDir: '/srv' })])).not.toThrow();
  });
});
