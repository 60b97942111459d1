import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { labDown, labUp } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy } from '../testing/built-cli.js';


const pideploy = (args: readonly string[]) => runBuiltPideploy(args);

describeLab('host keys from the CLI: never accepted silently', () => {
  let sshConfig: string;
  let knownHosts: string;
  beforeAll(async () => {
    const lab = await labUp({ hosts: 1 });
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-host-key-'));
    knownHosts = path.join(workDir, 'known_hosts');
    await writeFile(knownHosts, '');
    // The lab's ssh_config, but with a known_hosts that does not know the host yet.
    sshConfig = path.join(workDir, 'ssh_config');
    await writeFile(sshConfig, readFileSync(lab.sshConfig, 'utf8').replaceAll(lab.knownHosts, knownHosts));
  });
  afterAll(async () => {
    await labDown();
  });

  it('refuses an unknown host with its fingerprint, records it with --accept-new-host-key, and refuses a changed key', async () => {
    const unknown = await pideploy(['status', 'deploy@pi1', '--ssh-config', sshConfig]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/SHA256:[A-Za-z0-9+/]{43}/u);
    expect(unknown.stderr).toContain('--accept-new-host-key');
    expect(readFileSync(knownHosts, 'utf8')).toBe('');

    const accepted = await pideploy(['status', 'deploy@pi1', '--ssh-config', sshConfig, '--accept-new-host-key']);
    expect(accepted.stderr).not.toContain('pideploy:');
    expect(accepted.code).toBe(0);
    const recorded = readFileSync(knownHosts, 'utf8');
    expect(recorded).toMatch(/ssh-ed25519 AAAA/u);
    // The recorded line is the real key: OpenSSH itself now connects with this known_hosts.
    expect(execFileSync('ssh', ['-F', sshConfig, 'deploy@pi1', 'hostname'], { encoding: 'utf8' })).toBe('pi1\n');

    // Another key recorded for the host = a changed host key: a hard error, --accept-new-host-key or not.
    const otherKey = path.join(path.dirname(knownHosts), 'other');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey]);
    const [type, key] = readFileSync(`${otherKey}.pub`, 'utf8').trim().split(/\s+/u);
    await writeFile(knownHosts, recorded.replace(/ssh-ed25519 \S+/u, `${type} ${key}`));
    const changed = await pideploy(['status', 'deploy@pi1', '--ssh-config', sshConfig, '--accept-new-host-key']);
    expect(changed.code).toBe(1);
    expect(changed.stderr.split('\n')[0]).toMatch(/changed/iu);
  });
});
