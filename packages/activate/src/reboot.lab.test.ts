import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter } from '@pideploy/core';
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
});
