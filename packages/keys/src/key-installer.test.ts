import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KEY_INSTALLER_BOOTSTRAP, KEY_INSTALLER_SCRIPT, KEY_RECORD_BOOT_PREFIX, KEY_RECORD_FILE, keyInstallerArgv, keyInstallerInput, parseKeyInstallerOutput, parseKeyInstallerReport } from './key-installer.js';
import type { KeySpec } from './key-spec.js';

// Every test's directory is made under one root, removed once this file's tests are done.
const scratch = mkdtempSync(path.join(os.tmpdir(), 'pideploy-keys-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const temporaryDirectory = (prefix: string) => mkdtempSync(path.join(scratch, path.basename(prefix)));

const isRoot = process.getuid?.() === 0;
const nobody = { uid: Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim()), gid: Number(spawnSync('getent', ['group', 'nogroup'], { encoding: 'utf8' }).stdout.split(':')[2]) };

function key(name: string, destDir: string, fields: Partial<KeySpec> = {}): KeySpec {
  return { name, destDir, source: { file: '/unused' }, user: 'root', group: 'root', permissions: '0600', uploadAt: 'pre-activation', ...fields };
}

/** Runs the installer as the host would (argv after sudo), with a real shell. */
function install(shell: string, keys: readonly KeySpec[], contents: readonly (string | Buffer)[], input?: Buffer, remove: readonly string[] = [], record = '') {
  const [, ...rest] = keyInstallerArgv(keys, remove, record);
  const result = spawnSync(shell, rest, { input: input ?? keyInstallerInput(contents.map((content) => Buffer.from(content))), encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The record's first line on this machine: the boot it is written in, as the kernel says. */
const bootLine = `${KEY_RECORD_BOOT_PREFIX}${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()}\n`;

/** The installer's own first stdin line (what {@link keyInstallerInput} starts with). */
const scriptLine = `${Buffer.from(KEY_INSTALLER_SCRIPT).toString('base64')}\n`;

const modeOf = (file: string) => (statSync(file).mode & 0o7777).toString(8).padStart(4, '0');

describe('keyInstallerArgv / keyInstallerInput / parseKeyInstallerOutput', () => {
  it('puts names and places in argv and contents only on stdin, one base64 line per key', () => {
    const keys = [key('wifi.psk', '/run/keys/'), key('token', '/var/lib/secrets', { user: 'nobody', group: 'nogroup', permissions: '0640' })];
    const argv = keyInstallerArgv(keys);
    expect(argv.slice(0, 3)).toEqual(['/bin/sh', '-c', KEY_INSTALLER_BOOTSTRAP]);
    // One short line: what sudo logs of an upload is the keys' names and places.
    expect(KEY_INSTALLER_BOOTSTRAP).not.toContain('\n');
    expect(argv.slice(3)).toEqual(['pideploy-keys', KEY_RECORD_FILE, '2', 'wifi.psk', '/run/keys', 'root', 'root', '0600', 'token', '/var/lib/secrets', 'nobody', 'nogroup', '0640']);
    const input = keyInstallerInput([Buffer.from('s3cret\n'), Buffer.from([0, 255, 10])]).toString('ascii');
    expect(input).toBe(`${scriptLine}${Buffer.from('s3cret\n').toString('base64')}\n${Buffer.from([0, 255, 10]).toString('base64')}\n`);
    expect(argv.join(' ')).not.toContain('s3cret');
  });

  it('reads the report only when it accounts for every key in order', () => {
    const keys = [key('a', '/run/keys'), key('b', '/srv')];
    expect(parseKeyInstallerOutput('installed a\nunchanged b\n', keys)).toEqual([
      { name: 'a', path: '/run/keys/a', changed: true },
      { name: 'b', path: '/srv/b', changed: false },
    ]);
    expect(parseKeyInstallerOutput('installed a\n', keys)).toBeUndefined();
    expect(parseKeyInstallerOutput('installed b\ninstalled a\n', keys)).toBeUndefined();
  });

  it('puts the files to remove after the keys in argv, and reads what became of each', () => {
    const keys = [key('a', '/run/keys')];
    expect(keyInstallerArgv(keys, ['/run/keys/old', '/srv/gone']).slice(5)).toEqual(['1', 'a', '/run/keys', 'root', 'root', '0600', '/run/keys/old', '/srv/gone']);
    expect(parseKeyInstallerReport('unchanged a\nremoved /run/keys/old\nabsent /srv/gone\n', keys, ['/run/keys/old', '/srv/gone'])).toEqual({
      installed: [{ name: 'a', path: '/run/keys/a', changed: false }],
      removed: [
        { path: '/run/keys/old', outcome: 'removed' },
        { path: '/srv/gone', outcome: 'absent' },
      ],
    });
    expect(parseKeyInstallerReport('removed /x/not-a-file\n', [], ['/x/not-a-file'])?.removed).toEqual([{ path: '/x/not-a-file', outcome: 'removed' }]);
    expect(parseKeyInstallerReport('unchanged a\n', keys, ['/run/keys/old'])).toBeUndefined();
    expect(parseKeyInstallerReport('unchanged a\nremoved /run/keys/other\n', keys, ['/run/keys/old'])).toBeUndefined();
  });
});

describe.each(['dash', 'bash'])('KEY_INSTALLER_SCRIPT run by a real %s as root', (shell) => {
  it.runIf(isRoot)('installs each key with its owner and mode, exact bytes, creates a missing directory, leaves nothing else', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const secrets = path.join(root, 'var', 'lib', 'secrets');
    const binary = Buffer.from([0, 1, 2, 255, 10, 10, 32]);
    const run = install(shell, [key('wifi.psk', root), key('blob', secrets, { user: 'nobody', group: 'nogroup', permissions: '0440' }), key('empty', root)], ['psk with spaces\n', binary, '']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('installed wifi.psk\ninstalled blob\ninstalled empty\n');
    expect(readFileSync(path.join(root, 'wifi.psk'), 'utf8')).toBe('psk with spaces\n');
    expect(modeOf(path.join(root, 'wifi.psk'))).toBe('0600');
    expect(readFileSync(path.join(secrets, 'blob'))).toEqual(binary);
    expect(modeOf(path.join(secrets, 'blob'))).toBe('0440');
    expect([statSync(path.join(secrets, 'blob')).uid, statSync(path.join(secrets, 'blob')).gid]).toEqual([nobody.uid, nobody.gid]);
    expect(readFileSync(path.join(root, 'empty'), 'utf8')).toBe('');
    // The directory it made is traversable (owners other than root must reach their key).
    expect(modeOf(secrets)).toBe('0755');
    expect(readdirSync(root).sort()).toEqual(['empty', 'var', 'wifi.psk']);
    expect(readdirSync(secrets)).toEqual(['blob']);
  });

  it.runIf(isRoot)('leaves a key with the same bytes, owner and mode alone; a new content or mode is installed', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const keys = [key('a', root), key('b', root, { permissions: '0640' })];
    expect(install(shell, keys, ['one', 'two']).stdout).toBe('installed a\ninstalled b\n');
    const inode = statSync(path.join(root, 'a')).ino;
    expect(install(shell, keys, ['one', 'two']).stdout).toBe('unchanged a\nunchanged b\n');
    expect(statSync(path.join(root, 'a')).ino).toBe(inode);
    expect(install(shell, [keys[0] as KeySpec, key('b', root, { permissions: '0600' })], ['ONE', 'two']).stdout).toBe('installed a\ninstalled b\n');
    expect(readFileSync(path.join(root, 'a'), 'utf8')).toBe('ONE');
    expect(modeOf(path.join(root, 'b'))).toBe('0600');
    expect(readdirSync(root).sort()).toEqual(['a', 'b']);
  });

  it.runIf(isRoot)('writes nothing when one key cannot be installed: an unknown user, an unknown group, a directory in the way, a file as its directory', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    writeFileSync(path.join(root, 'kept'), 'old', { mode: 0o600 });
    mkdirSync(path.join(root, 'dir-in-the-way'));
    writeFileSync(path.join(root, 'a-file'), 'x');
    const cases: [KeySpec, RegExp][] = [
      [key('k', root, { user: 'no-such-user-pideploy' }), /^keys: key k: there is no user no-such-user-pideploy on /u],
      [key('k', root, { group: 'no-such-group-pideploy' }), /^keys: key k: there is no group no-such-group-pideploy on /u],
      [key('dir-in-the-way', root), /^keys: key dir-in-the-way: .*dir-in-the-way is a directory$/u],
      [key('k', path.join(root, 'a-file')), /^keys: key k: .*a-file exists and is not a directory$/u],
    ];
    for (const [bad, message] of cases) {
      const run = install(shell, [key('kept', root), bad], ['new', 'x']);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr.trim()).toMatch(message);
      expect(readFileSync(path.join(root, 'kept'), 'utf8')).toBe('old');
    }
    expect(readdirSync(root).sort()).toEqual(['a-file', 'dir-in-the-way', 'kept']);
  });

  it.runIf(isRoot)('input cut short: fails, removes the new files it made, places none', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    writeFileSync(path.join(root, 'a'), 'old', { mode: 0o600 });
    const run = install(shell, [key('a', root), key('b', root)], [], Buffer.from(`${scriptLine}${Buffer.from('new').toString('base64')}\n`));
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('keys: key b: its content did not arrive (the upload was cut short)');
    expect(readFileSync(path.join(root, 'a'), 'utf8')).toBe('old');
    expect(readdirSync(root)).toEqual(['a']);
  });

  it.runIf(isRoot)('never follows a link planted where it writes; replaces a link at the destination by the key itself', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, path.join(root, '.k.pideploy-new'));
    symlinkSync(victim, path.join(root, 'k'));
    const run = install(shell, [key('k', root)], ['secret']);
    expect(run.code).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(lstatSync(path.join(root, 'k')).isSymbolicLink()).toBe(false);
    expect(readFileSync(path.join(root, 'k'), 'utf8')).toBe('secret');
    expect(existsSync(path.join(root, '.k.pideploy-new'))).toBe(false);
  });

  it.runIf(isRoot)('removes the files of keys no longer wanted after placing the others: a link itself, never its target; not a directory', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'precious');
    writeFileSync(path.join(root, 'old'), 'stale', { mode: 0o600 });
    symlinkSync(victim, path.join(root, 'linked'));
    mkdirSync(path.join(root, 'a-dir'));
    const remove = ['old', 'linked', 'a-dir', 'never-there'].map((name) => path.join(root, name));
    const run = install(shell, [key('k', root)], ['new'], undefined, remove);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout).toBe(`installed k\nremoved ${remove[0]}\nremoved ${remove[1]}\nnot-a-file ${remove[2]}\nabsent ${remove[3]}\n`);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readdirSync(root).sort()).toEqual(['a-dir', 'k', 'victim']);
    // Removing only (no key to install) works too.
    writeFileSync(path.join(root, 'k2'), 'x');
    expect(install(shell, [], [], undefined, [path.join(root, 'k2')]).stdout).toBe(`removed ${path.join(root, 'k2')}\n`);
  });

  it.runIf(isRoot)('records the key files on the host (the boot, those still there, then this upload\'s, each once), readable by all, for a deploy from another clone', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const record = path.join(root, 'var', 'pideploy', 'keys');
    expect(install(shell, [key('a', root), key('b', root)], ['1', '2'], undefined, [], record).code).toBe(0);
    expect(readFileSync(record, 'utf8')).toBe(`${bootLine}${root}/a\n${root}/b\n`);
    expect([modeOf(record), modeOf(path.dirname(record))]).toEqual(['0644', '0755']);
    // Another upload (another stage, or another clone): what is still there stays listed, once.
    expect(install(shell, [key('c', root), key('a', root)], ['3', '1'], undefined, [], record).code).toBe(0);
    expect(readFileSync(record, 'utf8')).toBe(`${bootLine}${root}/a\n${root}/b\n${root}/c\n`);
    // Removed ones, and ones gone meanwhile (a reboot empties /run), drop out; a directory is no key file.
    rmSync(path.join(root, 'c'));
    const removed = install(shell, [], [], undefined, [path.join(root, 'b')], record);
    expect([removed.code, removed.stdout]).toEqual([0, `removed ${root}/b\n`]);
    expect(readFileSync(record, 'utf8')).toBe(`${bootLine}${root}/a\n`);
    // A record it cannot write is said, and the upload stands.
    const blocked = path.join(root, 'file-not-dir');
    writeFileSync(blocked, '');
    const unrecorded = install(shell, [key('d', root)], ['4'], undefined, [], path.join(blocked, 'keys'));
    expect([unrecorded.code, unrecorded.stdout]).toEqual([0, 'installed d\n']);
    expect(unrecorded.stderr).toContain(`keys: warning: could not record the key files in ${blocked}/keys`);
    expect(readFileSync(path.join(root, 'd'), 'utf8')).toBe('4');
  });

  it.runIf(isRoot)('rewrites the record one upload at a time: it waits while another upload holds its lock, and takes over a lock held for 10 s', { timeout: 30_000 }, async () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const record = path.join(root, 'var', 'keys');
    mkdirSync(path.dirname(record));
    const lock = `${record}.lock`;
    writeFileSync(lock, '');
    // Another upload holds the lock: this one waits for it (its key is in place already).
    const [, ...rest] = keyInstallerArgv([key('a', root)], [], record);
    const child = spawn(shell, rest, { env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    child.stdin.end(keyInstallerInput([Buffer.from('1')]));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect([existsSync(record), readFileSync(path.join(root, 'a'), 'utf8')]).toEqual([false, '1']);
    const released = performance.now();
    rmSync(lock);
    expect(await exited).toBe(0);
    expect((performance.now() - released) / 1000).toBeLessThan(2);
    expect([readFileSync(record, 'utf8'), existsSync(lock), stderr]).toEqual([`${bootLine}${root}/a\n`, false, '']);
    // A lock nobody gives back (its upload died) is taken over after 10 s, with a warning.
    writeFileSync(lock, '');
    const started = performance.now();
    const late = install(shell, [key('b', root)], ['2'], undefined, [], record);
    expect((performance.now() - started) / 1000).toBeGreaterThanOrEqual(10);
    expect(late.code).toBe(0);
    expect(late.stderr).toBe(`keys: warning: ${lock} was held for 10 s (left by an upload that died?): taken over\n`);
    expect([readFileSync(record, 'utf8'), existsSync(lock)]).toEqual([`${bootLine}${root}/a\n${root}/b\n`, false]);
  });

  it.runIf(isRoot)('removes nothing when a key cannot be installed, or when a path is not absolute or also to install', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    writeFileSync(path.join(root, 'old'), 'stale');
    const old = path.join(root, 'old');
    const cases: [KeySpec[], string[], RegExp][] = [
      [[key('k', root, { user: 'no-such-user-pideploy' })], [old], /^keys: key k: there is no user/u],
      [[key('k', root)], ['relative/old'], /^keys: relative\/old \(to remove\) is not an absolute path$/u],
      [[key('old', root)], [old], /^keys: .*\/old is both to install and to remove$/u],
    ];
    for (const [keys, remove, message] of cases) {
      const run = install(shell, keys, keys.map(() => 'x'), undefined, remove);
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toMatch(message);
      expect(readFileSync(old, 'utf8')).toBe('stale');
    }
    expect(readdirSync(root)).toEqual(['old']);
  });

  it('refuses to run as another user than root, and nonsense arguments', () => {
    const root = temporaryDirectory(path.join(os.tmpdir(), 'pideploy-keys-'));
    const [, ...rest] = keyInstallerArgv([key('k', root)]);
    const asNobody = isRoot
      ? spawnSync('setpriv', ['--reuid', String(nobody.uid), '--regid', String(nobody.gid), '--clear-groups', shell, ...rest], { input: `${scriptLine}eA==\n`, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } })
      : spawnSync(shell, rest, { input: `${scriptLine}eA==\n`, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
    expect(asNobody.status).toBe(1);
    expect(asNobody.stderr.trim()).toBe('keys: must run as root');
    expect(existsSync(path.join(root, 'k'))).toBe(false);
    if (isRoot) {
      const wrongCount = spawnSync(shell, ['-c', KEY_INSTALLER_BOOTSTRAP, 'pideploy-keys', '', '2', 'k', root, 'root', 'root', '0600'], { input: scriptLine, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
      expect(wrongCount.status).toBe(2);
      expect(wrongCount.stderr).toContain('expected 10 arguments after the count, got 5');
      const notCount = spawnSync(shell, ['-c', KEY_INSTALLER_BOOTSTRAP, 'pideploy-keys', '', 'x1', 'k'], { input: scriptLine, encoding: 'utf8', env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent' } });
      expect([notCount.status, notCount.stderr.trim()]).toEqual([2, 'pideploy-keys: the count x1 is not a number']);
    }
  });
});

