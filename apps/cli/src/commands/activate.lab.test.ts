import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { buildLabSystem, describeLab, sshLoginCount } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy, runBuiltPideployOnTerminal } from '../testing/built-cli.js';

const execFileAsync = promisify(execFile);

describeLab('pideploy activate / status against lab hosts (real sshd, sudo, nix)', () => {
  let status: LabStatus;
  let env: NodeJS.ProcessEnv;
  let workDir: string;
  let passwordFile: string;
  const systems: Record<string, string> = {};
  const onConsole = async (host: string, script: string) => (await labExec(host, ['sh', '-c', script])).stdout.trim();
  const lastActivation = (host: string) => onConsole(host, 'tail -n 1 /etc/lab-activations.log');
  const running = (host: string) => onConsole(host, 'readlink /run/current-system || true');
  const profile = (host: string) => onConsole(host, 'readlink -f /nix/var/nix/profiles/system || true');
  const gcRoot = (host: string) => onConsole(host, 'readlink /etc/nixos/current-configuration || true');
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
    const logins = () => sshLoginCount(status.hosts.find((host) => host.name === 'pi1')!);
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
      expect(result.stderr).toMatch(/^\[pi3\] warning: .*(time|timed out).*\(hint: /mu);
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

  it('health checks gate the confirmation: URL answering 200 and a passing command confirm; 503, a refused port or a failing command roll back (exit 1, one line)', async () => {
    // A loopback HTTP server on this machine stands in for the service the deployed system runs.
    const requests: string[] = [];
    const server = createServer((request, response) => {
      requests.push(request.url ?? '');
      response.writeHead(request.url === '/healthy' ? 200 : 503).end(request.url === '/healthy' ? 'ok\n' : 'starting\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const refused = createServer();
    await new Promise<void>((resolve) => refused.listen(0, '127.0.0.1', resolve));
    const refusedPort = (refused.address() as AddressInfo).port;
    await new Promise((resolve) => refused.close(resolve));
    try {
      await activate('base', '--no-rollback');
      const good = await activate('next', '--confirm-timeout', '20', '--health-check-url', `http://127.0.0.1:${port}/healthy`, '--health-check-command', 'test -e /run/current-system && test "$(id -un)" = deploy');
      expect(good.stderr).not.toContain('pideploy:');
      expect(good.code).toBe(0);
      expect(good.stdout).toMatch(/switch of \/nix\/store\/\S+ confirmed/u);
      expect(requests).toEqual(['/healthy']);
      expect(await running('pi1')).toBe(systems['next']);
      expect(await gcRoot('pi1')).toBe(systems['next']);

      const failures: [string[], RegExp][] = [
        [['--health-check-url', `http://127.0.0.1:${port}/unhealthy`], new RegExp(`the health check http://127\\.0\\.0\\.1:${port}/unhealthy answered HTTP 503 Service Unavailable`, 'u')],
        [['--health-check-url', `http://127.0.0.1:${refusedPort}/`], new RegExp(`the health check http://127\\.0\\.0\\.1:${refusedPort}/ could not be fetched: connect ECONNREFUSED 127\\.0\\.0\\.1:${refusedPort}`, 'u')],
        [['--health-check-command', 'test -e /nonexistent'], /the health check `sh -c 'test -e \/nonexistent'` exited 1/u],
      ];
      for (const [flags, reason] of failures) {
        const started = Date.now();
        const bad = await activate('other', '--confirm-timeout', '20', ...flags);
        expect(bad.code).toBe(1);
        // Progress lines ([deploy@pi1] …), then the failure: one line and its hint.
        const stderr = bad.stderr.trimEnd().split('\n');
        const lines = stderr.slice(stderr.findIndex((line) => line.startsWith('pideploy: ')));
        console.log(`${flags.join(' ')}: exit ${bad.code} after ${Date.now() - started} ms\n${lines.join('\n')}`);
        expect(lines).toHaveLength(2);
        expect(lines[0]).toMatch(/^pideploy: activated \S+ on deploy@pi1 but could not confirm it: /u);
        expect(lines[0]).toMatch(reason);
        expect(lines[0]).toMatch(new RegExp(`the host rolled back to generation \\d+, running ${systems['next']} again$`, 'u'));
        expect(lines[1]).toMatch(/^hint: .*health check/u);
        // Back on the confirmed system, boot default included; the GC root never moved.
        expect(await running('pi1')).toBe(systems['next']);
        expect(await profile('pi1')).toBe(systems['next']);
        expect(await gcRoot('pi1')).toBe(systems['next']);
        expect(await onConsole('pi1', `ls /nix/var/nix/profiles | grep -c '^system-' ; for link in /nix/var/nix/profiles/system-*-link; do readlink "$link"; done | grep -c ${systems['other']} || true`)).toBe('2\n0');
      }
      expect(requests).toEqual(['/healthy', '/unhealthy']);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }, 180_000);

  const onTerminal = (args: readonly string[], keys: readonly string[]) => runBuiltPideployOnTerminal(args, { env, prompt: '[sudo] password for deploy@pi1: ', keys });

  it('on a real terminal the sudo password is asked exactly once, not echoed, and serves activate + confirmation', async () => {
    const { transcript, exitCode, ms } = await onTerminal(['activate', 'deploy@pi1', '--ssh-config', status.sshConfig, '--toplevel', systems['tty']!, '--confirm-timeout', '20'], [`${LAB_SUDO_PASSWORD}\r`]);
    console.log(`pty transcript (${ms} ms, exit ${exitCode}):\n${transcript}`);
    expect(exitCode).toBe(0);
    expect(transcript.split('[sudo] password for').length - 1).toBe(1);
    expect(transcript).not.toContain(LAB_SUDO_PASSWORD);
    expect(transcript).toMatch(/switch of \/nix\/store\/\S+ confirmed/u);
    expect(await running('pi1')).toBe(systems['tty']);
  }, 120_000);

  it('on a real terminal: a wrong password gets "Sorry, try again." and a second prompt (rollback then works); Ctrl-C at the prompt interrupts (exit 130)', async () => {
    // Generations …, base, tty (current): a rollback goes to base.
    for (const system of ['base', 'tty']) expect((await activate(system, '--no-rollback')).code).toBe(0);
    const rollback = ['rollback', 'deploy@pi1', '--ssh-config', status.sshConfig];
    const interrupted = await onTerminal(rollback, ['\u0003']);
    console.log(`pty transcript, Ctrl-C (${interrupted.ms} ms, exit ${interrupted.exitCode}):\n${interrupted.transcript}`);
    expect(interrupted.exitCode).toBe(130);
    expect(interrupted.transcript).toContain('pideploy: interrupted');
    expect(await running('pi1')).toBe(systems['tty']);

    const wrong = 'not-the-password';
    const retried = await onTerminal(rollback, [`${wrong}\r`, `${LAB_SUDO_PASSWORD}\r`]);
    console.log(`pty transcript, wrong then right (${retried.ms} ms, exit ${retried.exitCode}):\n${retried.transcript}`);
    expect(retried.exitCode).toBe(0);
    expect(retried.transcript.split('[sudo] password for').length - 1).toBe(2);
    expect(retried.transcript).toMatch(/\[sudo\] password for deploy@pi1: \r?\nSorry, try again\.\r?\n\[sudo\] password for deploy@pi1: /u);
    expect(retried.transcript).not.toContain(wrong);
    expect(retried.transcript).not.toContain(LAB_SUDO_PASSWORD);
    expect(retried.transcript).toMatch(/deploy@pi1: now on generation \d+/u);
    expect(await running('pi1')).toBe(systems['base']);
  }, 120_000);
});
