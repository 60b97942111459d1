import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { classifySshError } from './errors.js';
import {
  checkHostKey,
  formatKnownHostsLine,
  hashKnownHostsName,
  knownHostsEntryMatches,
  knownHostsName,
  parseKnownHosts,
  sshFingerprint,
  sshKeyType,
} from './known-hosts.js';
import { orderHostKeyAlgorithms } from './session.js';
import { readSudoPasswordFromFile, readSudoPasswordFromStdin } from './sudo.js';

const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-known-hosts-'));

/** A fresh key pair made by the real ssh-keygen; returns the public line's type and blob. */
function generateKey(name: string, type: 'ed25519' | 'ecdsa' | 'rsa'): { file: string; type: string; blob: Buffer; line: string } {
  const file = path.join(workDir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', name, '-f', file]);
  const line = readFileSync(`${file}.pub`, 'utf8').trim();
  const [keyType, base64] = line.split(' ');
  return { file, type: keyType as string, blob: Buffer.from(base64 as string, 'base64'), line };
}

const ed = generateKey('ed', 'ed25519');
const ec = generateKey('ec', 'ecdsa');
const rsa = generateKey('rsa', 'rsa');
const other = generateKey('other', 'ed25519');

describe('fingerprints and key types', () => {
  it.each([ed, ec, rsa])('match ssh-keygen -lf for $type', (key) => {
    const printed = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${key.file}.pub`], { encoding: 'utf8' });
    expect(printed.split(' ')[1]).toBe(sshFingerprint(key.blob));
    expect(sshKeyType(key.blob)).toBe(key.type);
  });
});

describe('known_hosts matching agrees with ssh-keygen -F (plain and hashed by ssh-keygen -H)', () => {
  const plain = [
    `host1,10.0.0.1 ${ed.type} ${ed.blob.toString('base64')}`,
    `[host2]:2222 ${ec.type} ${ec.blob.toString('base64')}`,
    `*.lan,!bad.lan ${rsa.type} ${rsa.blob.toString('base64')}`,
    `Host3 ${ed.type} ${ed.blob.toString('base64')} comment here`,
  ].join('\n');
  const plainFile = path.join(workDir, 'known_hosts');
  writeFileSync(plainFile, `${plain}\n`);
  const hashedFile = path.join(workDir, 'known_hosts_hashed');
  writeFileSync(hashedFile, `${plain}\n`);
  execFileSync('ssh-keygen', ['-q', '-H', '-f', hashedFile], { stdio: 'ignore' });
  const hashedText = readFileSync(hashedFile, 'utf8');

  const names = ['host1', '10.0.0.1', knownHostsName('host2', 2222), 'host2', 'pi.lan', 'bad.lan', 'host3', 'HOST1', knownHostsName('host1', 2222), 'nothere'];
  for (const [label, file, text] of [
    ['plain', plainFile, plain],
    ['hashed', hashedFile, hashedText],
  ] as const) {
    it(`${label}: ${names.join(' ')}`, () => {
      if (label === 'hashed') expect(text).toMatch(/^\|1\|/mu);
      const entries = parseKnownHosts(text, file);
      for (const name of names) {
        const keygen = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
        const expectedLines = keygen.stdout.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
        const ours = entries.filter((entry) => knownHostsEntryMatches(entry, name));
        expect(ours.map((entry) => entry.key.toString('base64')), name).toEqual(expectedLines.map((line) => line.split(' ')[2]));
      }
    });
  }

  it('hashes names like ssh-keygen (HMAC-SHA1 under the salt)', () => {
    const entries = parseKnownHosts(hashedText, hashedFile);
    const first = entries[0];
    expect(first?.hashed).toBeDefined();
    expect(hashKnownHostsName('host1', first?.hashed?.salt)).toBe(hashedText.split(' ')[0]);
  });
});

describe('checkHostKey', () => {
  const text = [
    `pi1,10.0.0.2 ${ed.type} ${ed.blob.toString('base64')}`,
    `pi1 ${rsa.type} ${rsa.blob.toString('base64')}`,
    `@cert-authority *.lan ${ec.type} ${ec.blob.toString('base64')}`,
    `@revoked * ${other.type} ${other.blob.toString('base64')}`,
    `garbage line`,
  ].join('\n');
  const entries = parseKnownHosts(text, 'kh');

  it('skips malformed lines and keeps markers', () => {
    expect(entries.map((entry) => entry.marker)).toEqual([undefined, undefined, 'cert-authority', 'revoked']);
  });
  it('accepts a listed key of any listed type', () => {
    expect(checkHostKey(entries, ['pi1'], ed.blob).status).toBe('known');
    expect(checkHostKey(entries, ['pi1'], rsa.blob).status).toBe('known');
  });
  it('reports a different key of a known type as changed', () => {
    const verdict = checkHostKey(parseKnownHosts(`pi1 ${ed.type} ${ed.blob.toString('base64')}`), ['pi1'], generateKey('new', 'ed25519').blob);
    expect(verdict.status).toBe('changed');
  });
  it('reports an unlisted host, or an unlisted key type, as unknown', () => {
    expect(checkHostKey(entries, ['pi2'], ed.blob)).toMatchObject({ status: 'unknown', otherTypes: [] });
    expect(checkHostKey(entries, ['pi1'], ec.blob)).toMatchObject({ status: 'unknown', otherTypes: ['ssh-ed25519', 'ssh-rsa'] });
  });
  it('refuses a revoked key and notes ignored cert authorities', () => {
    expect(checkHostKey(entries, ['pi1'], other.blob).status).toBe('revoked');
    const verdict = checkHostKey(entries, ['x.lan'], ec.blob);
    expect(verdict.status === 'unknown' && verdict.notes.join()).toMatch(/cert-authority/u);
  });
  it('writes lines that ssh-keygen -F finds, hashed or not', () => {
    const file = path.join(workDir, 'written');
    writeFileSync(file, formatKnownHostsLine('[pi9]:2200', ed.blob) + formatKnownHostsLine('pi8', ec.blob, { hash: true }));
    expect(spawnSync('ssh-keygen', ['-F', '[pi9]:2200', '-f', file]).status).toBe(0);
    expect(spawnSync('ssh-keygen', ['-F', 'pi8', '-f', file]).status).toBe(0);
    expect(spawnSync('ssh-keygen', ['-F', 'pi7', '-f', file]).status).not.toBe(0);
  });
  it('offers the known key types first', () => {
    expect(orderHostKeyAlgorithms(['ssh-rsa']).slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(orderHostKeyAlgorithms([])[0]).toBe('ssh-ed25519');
  });
});

describe('classifySshError', () => {
  const where = { display: 'deploy@pi1', user: 'deploy', hostname: 'pi1', port: 22, offered: ['/k'] };
  it.each([
    [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'PIDEPLOY_SSH_UNREACHABLE', true],
    [Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' }), 'PIDEPLOY_SSH_UNREACHABLE', true],
    [Object.assign(new Error('x'), { code: 'EHOSTUNREACH' }), 'PIDEPLOY_SSH_UNREACHABLE', true],
    [Object.assign(new Error('Timed out while waiting for handshake'), { level: 'client-timeout' }), 'PIDEPLOY_SSH_TIMEOUT', true],
    [Object.assign(new Error('All configured authentication methods failed'), { level: 'client-authentication' }), 'PIDEPLOY_SSH_AUTH_FAILED', false],
    [new Error('bad packet'), 'PIDEPLOY_SSH_CONNECTION_FAILED', false],
  ])('%s', (error, code, retryable) => {
    const classified = classifySshError(error, where);
    expect(classified.code).toBe(code);
    expect(classified.isRetryable).toBe(retryable);
    expect(classified.hint).toBeTruthy();
  });
});

describe('sudo password helpers', () => {
  it('reads the first line of a file or stream', async () => {
    const file = path.join(workDir, 'pw');
    writeFileSync(file, 's3cret pass\r\nignored\n', { mode: 0o600 });
    await expect(readSudoPasswordFromFile(file)).resolves.toBe('s3cret pass');
    await expect(readSudoPasswordFromStdin(Readable.from([Buffer.from('abc'), Buffer.from('def\nrest')]))).resolves.toBe('abcdef');
    await expect(readSudoPasswordFromStdin(Readable.from([Buffer.from('\n')]))).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
    await expect(readSudoPasswordFromFile(path.join(workDir, 'missing'))).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
  });
});
