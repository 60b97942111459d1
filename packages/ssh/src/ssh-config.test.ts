import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { currentLocalIdentity, loadSshConfig } from './ssh-config-files.js';
import { parseProxyJump, parseSshConfig, parseSshTarget, resolveSshHost, splitSshConfigArguments } from './ssh-config.js';

const local = currentLocalIdentity();
const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-ssh-config-'));

/** What OpenSSH itself resolves (`ssh -G`), as keyword → values. */
function openSshResolve(configFile: string, alias: string, extra: readonly string[] = []): Map<string, string[]> {
  const output = execFileSync('ssh', ['-G', '-F', configFile, ...extra, alias], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const values = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const space = line.indexOf(' ');
    if (space === -1) continue;
    const key = line.slice(0, space);
    values.set(key, [...(values.get(key) ?? []), line.slice(space + 1)]);
  }
  return values;
}

/** Expands what `ssh -G` prints unexpanded (identity files) the way ssh does when it uses them. */
function expandLikeSsh(file: string, tokens: Record<string, string>): string {
  const expanded = file.replace(/%(.)/gu, (_, letter: string) => (letter === '%' ? '%' : (tokens[letter] ?? `%${letter}`)));
  return expanded.startsWith('~/') ? `${local.homeDir}${expanded.slice(1)}` : expanded;
}

function writeConfig(name: string, text: string): string {
  const file = path.join(workDir, name);
  writeFileSync(file, text);
  return file;
}

const included = path.join(workDir, 'conf.d');
mkdirSync(included, { recursive: true });
writeFileSync(path.join(included, '10-a.conf'), 'Host inc-*\n  User from-include\n  Port 2201\n');
writeFileSync(path.join(included, '20-b.conf'), 'Host *\n  ConnectTimeout 11\n');

const CONFIG = `# a comment
Host pi?  !pi9
  HostName %h.lan
  User deploy
  IdentityFile ~/.ssh/k_%h_%r_%u
  IdentityFile /keys/%d/%n-%p

host pi9 special
  hostname=10.0.0.9
  USER = nine
  port 2222

Host bastion
  HostName 192.0.2.10
  User jumper
  Port 2200

Host behind
  ProxyJump jumper@bastion:2200,ssh://other@second:2222
  HostName "10.1.2.3"

Host nojump
  ProxyJump none

Match host special exec "false"
  User from-match

Include ${included}/*.conf

Host *
  Port 2022
  User fallback
  IdentitiesOnly yes
  UserKnownHostsFile ~/kh1 /tmp/kh2
  StrictHostKeyChecking accept-new
  ConnectTimeout 7
  ServerAliveInterval 1m
`;

describe('resolveSshHost agrees with `ssh -G`', () => {
  const file = writeConfig('config', CONFIG);
  const configs = loadSshConfig({ sshConfigFile: file, local });
  const cases: { alias: string; user?: string; port?: number }[] = [
    { alias: 'pi1' },
    { alias: 'pi9' },
    { alias: 'PI2' },
    { alias: 'special' },
    { alias: 'bastion' },
    { alias: 'behind' },
    { alias: 'nojump' },
    { alias: 'inc-x' },
    { alias: 'other.example' },
    { alias: 'pi1', user: 'cli-user', port: 4022 },
    { alias: 'pi10' },
  ];
  for (const { alias, user, port } of cases) {
    it(`${alias}${user === undefined ? '' : ` -l ${user}`}${port === undefined ? '' : ` -p ${port}`}`, () => {
      const extra = [...(user === undefined ? [] : ['-l', user]), ...(port === undefined ? [] : ['-p', String(port)])];
      const expected = openSshResolve(file, alias, extra);
      const resolved = resolveSshHost(configs, alias, { user, port, local });
      const one = (key: string) => expected.get(key)?.[0];
      expect(resolved.hostname).toBe(one('hostname'));
      expect(resolved.user).toBe(one('user'));
      expect(String(resolved.port)).toBe(one('port'));
      expect(resolved.identitiesOnly ? 'yes' : 'no').toBe(one('identitiesonly'));
      const strict = one('stricthostkeychecking');
      expect(resolved.strictHostKeyChecking).toBe(strict === 'true' ? 'yes' : strict === 'false' ? 'no' : strict);
      expect(resolved.connectTimeoutMs === undefined ? 'none' : String(resolved.connectTimeoutMs / 1000)).toBe(one('connecttimeout'));
      expect(String(resolved.serverAliveIntervalMs / 1000)).toBe(one('serveraliveinterval'));
      const jump = one('proxyjump');
      expect(resolved.proxyJump.length > 0 ? jump : undefined).toBe(jump);
      const tokens = { h: resolved.hostname, r: resolved.user, u: local.userName, d: local.homeDir, n: alias, p: String(resolved.port) };
      expect(resolved.identityFiles).toEqual((expected.get('identityfile') ?? []).map((identity) => expandLikeSsh(identity, tokens)));
      expect(resolved.userKnownHostsFiles.join(' ')).toBe(one('userknownhostsfile'));
    });
  }

  it('reports the Match block it skipped', () => {
    const resolved = resolveSshHost(configs, 'special', { local });
    expect(resolved.warnings.join('\n')).toMatch(/Match host special.*not supported/u);
  });

  it('parses ProxyJump hops, and none', () => {
    expect(resolveSshHost(configs, 'behind', { local }).proxyJump).toEqual([
      { host: 'bastion', user: 'jumper', port: 2200 },
      { host: 'second', user: 'other', port: 2222 },
    ]);
    expect(resolveSshHost(configs, 'nojump', { local }).proxyJump).toEqual([]);
    expect(parseProxyJump('none')).toEqual([]);
  });
});

describe('parseSshConfig', () => {
  it('splits quoted arguments and drops trailing comments', () => {
    expect(splitSshConfigArguments('"/a b" c # comment')).toEqual(['/a b', 'c']);
    expect(splitSshConfigArguments('"x\\"y" z')).toEqual(['x"y', 'z']);
  });

  it('keeps Include lines as warnings when it has no file access', () => {
    const parsed = parseSshConfig('Include foo\nHost a\n  User b\n');
    expect(parsed.warnings.join()).toMatch(/Include ignored/u);
    expect(resolveSshHost(parsed, 'a', { local }).user).toBe('b');
  });
});

describe('parseSshTarget', () => {
  it.each([
    ['pi1', { host: 'pi1' }],
    ['deploy@pi1', { host: 'pi1', user: 'deploy' }],
    ['deploy@pi1:2222', { host: 'pi1', user: 'deploy', port: 2222 }],
    ['ssh://root@10.0.0.2:22', { host: '10.0.0.2', user: 'root', port: 22 }],
    ['ssh://pi1/', { host: 'pi1' }],
    ['user@[::1]:2200', { host: '::1', user: 'user', port: 2200 }],
    ['fe80::1', { host: 'fe80::1' }],
    ['me@corp@host', { host: 'host', user: 'me@corp' }],
  ])('%s', (text, expected) => {
    expect(parseSshTarget(text)).toEqual({ user: undefined, port: undefined, ...expected });
  });

  it.each(['', 'user@', '@host', 'host:0', 'host:99999', 'host:x', '-oProxyCommand=x', 'ssh://h/path', 'a b'])('refuses %j', (text) => {
    expect(() => parseSshTarget(text)).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
  });
});
