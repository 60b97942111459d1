import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter, type PideployError } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { buildLabSystem, describeLab } from '@pideploy/lab/testing';
import type { SudoPasswordRequest } from '@pideploy/ssh';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { activateSystem, type ActivationTarget } from './activate.js';
import { rebootSystem } from './reboot.js';

const execFileAsync = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

describeLab('reboot: the host\'s own systemctl, a new boot id, the deployed system running', () => {
  let status: LabStatus;
  let workDir: string;
  const systems: Record<string, string> = {};
  const prompts: SudoPasswordRequest[] = [];
  const sudo = {
    passwordProvider: async (request: SudoPasswordRequest) => {
      prompts.push(request);
      return LAB_SUDO_PASSWORD;
    },
  };
  const labTarget = (target: string): ActivationTarget => ({
    target,
    name: target.split('@')[1],
    connect: { sshConfigFile: status.sshConfig, knownHostsFiles: [status.knownHosts], agent: false },
    sudo,
  });
  const onConsole = async (host: string, script: string) => (await labExec(host, ['sh', '-c', script], { instance })).stdout.trim();
  const running = (host: string) => onConsole(host, 'readlink /run/current-system || true');
  const booted = (host: string) => onConsole(host, 'readlink /run/booted-system || true');
  const bootId = (host: string) => onConsole(host, 'cat /proc/sys/kernel/random/boot_id');
  beforeAll(async () => {
    status = await labUp({ instance, hosts: 2, hostSettings: { pi1: { trusted: false, sudo: 'password' }, pi2: { trusted: false, sudo: 'password' } } });
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-reboot-lab-'));
    systems['base'] = await buildLabSystem(status, { label: 'base', workDir });
    systems['next'] = await buildLabSystem(status, { label: 'next', workDir });
    systems['breakSsh'] = await buildLabSystem(status, { label: 'reboot-break-ssh', extraConfig: 'lab.breakSsh = true;', workDir });
    systems['healthy'] = await buildLabSystem(status, { label: 'reboot-healthy', extraConfig: 'environment.etc."lab-healthy".text = "yes";', workDir });
    systems['unhealthy'] = await buildLabSystem(status, { label: 'reboot-unhealthy', workDir });
    for (const host of ['pi1', 'pi2']) {
      await execFileAsync('nix-copy-closure', ['--to', `root@${host}`, ...Object.values(systems)], { env: { ...process.env, ...status.env } });
      await onConsole(host, `nix-env -p /nix/var/nix/profiles/system --set ${systems['base']} && ${systems['base']}/bin/switch-to-configuration switch`);
    }
  }, 600_000);

  afterAll(async () => {
    await labDown({ instance });
  }, 120_000);

  it('boots a system activated with `boot`: the host comes back from a new boot running it; a second reboot is skipped', async () => {
    const reporter = createCollectingReporter();
    const context = createBaseContext({ reporter });
    const activated = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, action: 'boot' }, context);
    expect(activated.outcome).toBe('succeeded');
    expect(await running('pi1')).toBe(systems['base']);
    const before = await bootId('pi1');
    await onConsole('pi1', 'touch /run/before-reboot');

    const rebooted = await rebootSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']!, timeoutSeconds: 60 }, context);
    expect(rebooted).toMatchObject({ host: 'pi1', outcome: 'rebooted', bootIdBefore: before, runningSystem: systems['next'] });
    expect(rebooted.bootId).not.toBe(before);
    expect(await bootId('pi1')).toBe(rebooted.bootId);
    expect(await running('pi1')).toBe(systems['next']);
    expect(await booted('pi1')).toBe(systems['next']);
    // A real reboot: /run is new, and the boot ran the system's activation.
    expect(await onConsole('pi1', 'test -e /run/before-reboot && echo kept || echo gone')).toBe('gone');
    expect(await onConsole('pi1', 'tail -n 1 /etc/lab-activations.log')).toContain(` activate ${systems['next']} uid=0`);
    // One password for the activation and the reboot.
    expect(prompts).toHaveLength(1);
    const messages = reporter.events.flatMap((event) => (event.type === 'log' ? [event.message] : []));
    expect(messages).toContain(`rebooting pi1 into ${systems['next']}`);
    expect(messages).toContain('pi1 is rebooting; waiting up to 60 s for it to come back');

    const again = await rebootSystem({ ...labTarget('deploy@pi1'), toplevel: systems['next']! }, context);
    expect(again).toMatchObject({ outcome: 'not-needed', bootId: rebooted.bootId });
    expect(await bootId('pi1')).toBe(rebooted.bootId);
    expect(prompts).toHaveLength(1);
  });

  it('refuses to reboot into a system that is not the boot default, and leaves the host alone', async () => {
    const before = await bootId('pi1');
    await expect(rebootSystem({ ...labTarget('deploy@pi1'), toplevel: systems['base']! }, createBaseContext())).rejects.toMatchObject({
      code: 'PIDEPLOY_REBOOT_REFUSED',
      message: `pi1 would not boot ${systems['base']}: its system profile is ${systems['next']}`,
      hint: expect.stringContaining('--action boot or switch'),
    });
    expect(await bootId('pi1')).toBe(before);
  });

  it('says so when the host comes back running another system than its boot default (a boot loader that was not updated)', async () => {
    const context = createBaseContext();
    await activateSystem({ ...labTarget('deploy@pi2'), toplevel: systems['next']!, action: 'boot' }, context);
    // The lab's boot loader entry still names the old system, as a boot loader that failed to update would.
    await onConsole('pi2', `ln -sfn ${systems['base']} /nix/var/nix/lab-boot/default`);
    const before = await bootId('pi2');
    await expect(rebootSystem({ ...labTarget('deploy@pi2'), toplevel: systems['next']!, timeoutSeconds: 60 }, context)).rejects.toMatchObject({
      code: 'PIDEPLOY_REBOOT_WRONG_SYSTEM',
      message: `pi2 came back from its reboot running ${systems['base']}, not ${systems['next']}`,
    });
    expect(await bootId('pi2')).not.toBe(before);
    expect(await running('pi2')).toBe(systems['base']);
  });

  it('gives up on a host that comes back without a working login, naming the last failure', async () => {
    const context = createBaseContext();
    await activateSystem({ ...labTarget('deploy@pi2'), toplevel: systems['breakSsh']!, action: 'boot' }, context);
    const started = performance.now();
    await expect(rebootSystem({ ...labTarget('deploy@pi2'), toplevel: systems['breakSsh']!, timeoutSeconds: 8 }, context)).rejects.toMatchObject({
      code: 'PIDEPLOY_REBOOT_TIMEOUT',
      message: expect.stringMatching(/^pi2 did not come back within 8 s of its reboot \(last: SSH login to deploy@[0-9.]+ failed: the server accepted none of the keys offered/u),
    });
    expect(performance.now() - started).toBeGreaterThanOrEqual(8000);
    // It did reboot into that system: the console sees it, its login is what is broken.
    expect(await running('pi2')).toBe(systems['breakSsh']);
    await onConsole('pi2', `nix-env -p /nix/var/nix/profiles/system --set ${systems['base']} && ${systems['base']}/bin/switch-to-configuration switch`);
  });

  const generation = async (host: string) => Number(/^system-(\d+)-link$/u.exec(await onConsole(host, 'readlink /nix/var/nix/profiles/system'))?.[1]);

  it('checks the host\'s health once it is back, trying a check that fails while the host is still starting again', async () => {
    const context = createBaseContext();
    await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['healthy']!, action: 'boot' }, context);
    // Fails the first time in each boot (/tmp is new every boot), as a service still starting would.
    const command = ['sh', '-c', 'cat /etc/lab-healthy && if [ ! -e /tmp/tried ]; then touch /tmp/tried; echo still starting >&2; exit 1; fi'];
    const rebooted = await rebootSystem({ ...labTarget('deploy@pi1'), toplevel: systems['healthy']!, timeoutSeconds: 60, healthChecks: { command, timeoutMs: 5000 } }, context);
    expect(rebooted).toMatchObject({ outcome: 'rebooted', runningSystem: systems['healthy'], healthChecked: true });
    expect(await onConsole('pi1', 'test -e /tmp/tried && echo tried')).toBe('tried');
    expect(await running('pi1')).toBe(systems['healthy']);
  });

  it('sends a host that comes back unhealthy back to the generation it had, without the rejected one, and reboots it into it', async () => {
    const reporter = createCollectingReporter();
    const context = createBaseContext({ reporter });
    const promptsBefore = prompts.length;
    const healthyGeneration = await generation('pi1');
    const activated = await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['unhealthy']!, action: 'boot' }, context);
    expect(activated.state).toMatchObject({ previousGeneration: healthyGeneration, newGeneration: healthyGeneration + 1 });
    // What the GC root named before (the activation without a bundle moved it to the system).
    expect(await onConsole('pi1', 'readlink /etc/nixos/current-configuration')).toBe(systems['unhealthy']);
    const before = await bootId('pi1');

    const started = performance.now();
    const rollbackTo = { generation: healthyGeneration, rejectedGeneration: healthyGeneration + 1, gcRoot: systems['healthy']! };
    const failure = await rebootSystem(
      { ...labTarget('deploy@pi1'), toplevel: systems['unhealthy']!, timeoutSeconds: 60, healthChecks: { command: ['cat', '/etc/lab-healthy'], timeoutMs: 2500 }, rollbackTo },
      context,
    ).then(
      () => undefined,
      (error: unknown) => error as PideployError,
    );
    expect(failure?.code).toBe('PIDEPLOY_REBOOT_UNHEALTHY');
    const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/gu, '\\$&');
    expect(failure?.message).toMatch(
      new RegExp(
        `^pi1 came back from its reboot running ${escaped(systems['unhealthy']!)}, but the health check \`cat /etc/lab-healthy\` exited 1: cat: .*/etc/lab-healthy.*: No such file or directory \\(tried [2-4] times in 2\\.5 s\\); ` +
          `it was rolled back to generation ${healthyGeneration} \\(${escaped(systems['healthy']!)}\\) and rebooted into it$`,
        'u',
      ),
    );
    expect(failure?.hint).toContain('fix the service (or the check) and deploy again');
    // The check was given its 2.5 s before the rollback and the second reboot.
    expect(performance.now() - started).toBeGreaterThanOrEqual(2500);
    // Two boots later: running and booted the healthy system again, its generation the default, the rejected one gone.
    expect(await bootId('pi1')).not.toBe(before);
    expect(await running('pi1')).toBe(systems['healthy']);
    expect(await booted('pi1')).toBe(systems['healthy']);
    expect(await generation('pi1')).toBe(healthyGeneration);
    expect(await onConsole('pi1', `test -e /nix/var/nix/profiles/system-${healthyGeneration + 1}-link && echo kept || echo deleted`)).toBe('deleted');
    expect(await onConsole('pi1', 'readlink /etc/nixos/current-configuration')).toBe(systems['healthy']);
    // The boot into the rejected system, the rollback's boot default, the boot into it.
    const activations = (await onConsole('pi1', 'tail -n 3 /etc/lab-activations.log')).split('\n');
    expect(activations.map((line) => line.split(' ').slice(1, 3).join(' '))).toEqual([`activate ${systems['unhealthy']}`, `boot ${systems['healthy']}`, `activate ${systems['healthy']}`]);
    // The same remembered password for the activation, the reboots and the rollback.
    expect(prompts).toHaveLength(promptsBefore);
    const warnings = reporter.events.flatMap((event) => (event.type === 'log' && event.level === 'warn' ? [event.message] : []));
    expect(warnings).toEqual([expect.stringMatching(new RegExp(`^pi1 came back from its reboot running .*: rolling it back to generation ${healthyGeneration} and rebooting$`, 'u'))]);
  });

  it('leaves an unhealthy host as it is when there is nothing to go back to, and says so', async () => {
    const context = createBaseContext();
    await activateSystem({ ...labTarget('deploy@pi1'), toplevel: systems['unhealthy']!, action: 'boot' }, context);
    await expect(
      rebootSystem({ ...labTarget('deploy@pi1'), toplevel: systems['unhealthy']!, timeoutSeconds: 60, healthChecks: { command: ['cat', '/etc/lab-healthy'], timeoutMs: 1000 } }, context),
    ).rejects.toMatchObject({
      code: 'PIDEPLOY_REBOOT_UNHEALTHY',
      message: expect.stringMatching(/, but the health check `cat \/etc\/lab-healthy` exited 1: .*; it was left so \(this deployment made no generation to go back from\)$/u),
      hint: expect.stringContaining('`pideploy rollback pi1 --action boot --reboot` boots its previous generation'),
    });
    expect(await running('pi1')).toBe(systems['unhealthy']);
  });
});
