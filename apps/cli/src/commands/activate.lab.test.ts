import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { buildLabSystem, describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy } from '../testing/built-cli.js';

const execFileAsync = promisify(execFile);

describeLab('pideploy activate / status against lab hosts (real sshd, sudo, nix)', () => {
  let status: LabStatus;
  let env: NodeJS.ProcessEnv;
  let workDir: string;
  let passwordFile: string;
  const systems: Record<string, string> = {};
  const onConsole = async (host: string, script: string) => (await labExec(host, ['sh', '-c', script])).stdout.trim();
  const lastActivation = (host: string) => onConsole(host, 'tail -n 1 /etc/lab-activations.log');
  /** `pideploy activate deploy@pi1 --toplevel <system> …` with the lab's ssh_config and the password in a file. */
  const activate = (system: string, ...flags: string[]) =>
    runBuiltPideploy(['activate', 'deploy@pi1', '--ssh-config', status.sshConfig, '--sudo-password-file', passwordFile, '--toplevel', systems[system]!, ...flags], { env });

  beforeAll(async () => {
    status = await labUp({ hosts: 3, hostSettings: { pi1: { trusted: false, sudo: 'password' }, pi2: { sudo: 'nopasswd' }, pi3: { sudo: 'nopasswd' } } });
    env = { ...process.env, ...status.env };
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-cli-activate-'));
    passwordFile = path.join(workDir, 'sudo-password');
    await writeFile(passwordFile, `${LAB_SUDO_PASSWORD}\n`, { mode: 0o600 });
    for (const label of ['base', 'next', 'other', 'tty']) systems[label] = await buildLabSystem(status, { label, workDir });
    for (const host of ['pi1', 'pi2', 'pi3']) {
      await execFileAsync('nix-copy-closure', ['--to', `root@${host}`, ...Object.values(systems)], { env });
    }
  }, 600_000);

  afterAll(async () => {
    await labDown();
  }, 120_000);

  it('status of 3 hosts runs them at once, prints them in argument order, and a hung host gets its error line and exit 1', async () => {
    // pi3's sshd is frozen: connections are accepted by the kernel but never answered (a wedged host).
    const connectTimeout = 6;
    const sshConfig = path.join(workDir, 'ssh_config');
    await writeFile(sshConfig, `ConnectTimeout ${connectTimeout}\nInclude ${status.sshConfig}\n`);
    const frozen = status.hosts.find((host) => host.name === 'pi3')!.pids.sshd!;
    const pi1Log = status.hosts.find((host) => host.name === 'pi1')!.sshdLog;
    const logins = () => readFileSync(pi1Log, 'utf8').split('Accepted publickey').length;
    const loginsBefore = logins();
    process.kill(frozen, 'SIGSTOP');
    try {
      const started = Date.now();
      const command = runBuiltPideploy(['status', 'pi3', 'pi1', 'pi2', '--ssh-config', sshConfig], { env });
      // Serially, pi1 would be asked only after pi3's connect timeout.
      let pi1AskedAfter: number | undefined;
      while (pi1AskedAfter === undefined && Date.now() - started < (connectTimeout + 5) * 1000) {
        if (logins() > loginsBefore) pi1AskedAfter = Date.now() - started;
        else await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const result = await command;
      const elapsed = Date.now() - started;
      console.log(`status pi3(hung) pi1 pi2: pi1 logged in after ${pi1AskedAfter} ms, all done in ${elapsed} ms (connect timeout ${connectTimeout} s)`);
      expect(pi1AskedAfter).toBeLessThan(connectTimeout * 1000 - 2000);
      expect(elapsed).toBeLessThan((connectTimeout + 3) * 1000);
      expect(result.code).toBe(1);
      const lines = result.stdout.split('\n');
      const errorLine = lines.findIndex((line) => line.startsWith('pi3: error: '));
      expect(errorLine).toBe(0);
      expect(lines[errorLine]).toMatch(/time|timed out/iu);
      expect(lines.indexOf('pi1:')).toBeGreaterThan(errorLine);
      expect(lines.indexOf('pi2:')).toBeGreaterThan(lines.indexOf('pi1:'));
      expect(lines.filter((line) => line.startsWith('  running:'))).toHaveLength(2);
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    // All reachable: exit 0, JSON in argument order.
    const json = await runBuiltPideploy(['status', 'pi2', 'pi1', '--ssh-config', status.sshConfig, '--json'], { env });
    expect(json.code).toBe(0);
    const value = (JSON.parse(json.stdout.trim().split('\n').at(-1)!) as { result: { host: string }[] }).result;
    expect(value.map((entry) => entry.host)).toEqual(['pi2', 'pi1']);
  }, 120_000);

  it('--install-bootloader gives switch-to-configuration NIXOS_INSTALL_BOOTLOADER=1; without it the value is not 1', async () => {
    const withFlag = await activate('base', '--action', 'boot', '--install-bootloader');
    expect(withFlag.stderr).not.toContain('pideploy:');
    expect(withFlag.code).toBe(0);
    expect(await lastActivation('pi1')).toMatch(new RegExp(`^\\S+ boot ${systems['base']} uid=0 .* install-bootloader=1$`, 'u'));

    const without = await activate('base', '--no-rollback');
    expect(without.code).toBe(0);
    const line = await lastActivation('pi1');
    expect(line).toContain(`switch ${systems['base']} uid=0`);
    expect(/install-bootloader=(\S*)$/u.exec(line)?.[1] ?? 'unset').not.toBe('1');
  }, 120_000);
});
