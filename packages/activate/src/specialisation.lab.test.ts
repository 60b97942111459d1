import { execFile } from 'node:child_process';
import { mkdtemp, realpath } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter, type PideployError } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { buildLabSystem, describeLab } from '@pideploy/lab/testing';
import { connectSsh } from '@pideploy/ssh';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { activateSystem, readHostSystems, systemStatus, type ActivationTarget } from './activate.js';
import { specialisationsOf } from './specialisation.js';

const execFileAsync = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

describeLab('specialisations on a lab host: switch and test to one, skip, back to the system, unknown and failing ones', () => {
  let status: LabStatus;
  let system = '';
  let maintenance = '';
  const target = (): ActivationTarget => ({
    target: 'deploy@pi1',
    connect: { sshConfigFile: status.sshConfig, knownHostsFiles: [status.knownHosts], agent: false },
    sudo: { password: LAB_SUDO_PASSWORD },
  });
  const onConsole = async (script: string) => (await labExec('pi1', ['sh', '-c', script], { instance })).stdout.trim();
  const running = () => onConsole('readlink /run/current-system || true');
  const profile = () => onConsole('readlink -f /nix/var/nix/profiles/system || true');
  const mode = () => onConsole('cat /etc/mode 2>/dev/null || echo none');

  beforeAll(async () => {
    status = await labUp({ instance, hosts: 1, hostSettings: { pi1: { trusted: false, sudo: 'password' } } });
    const env = { ...process.env, ...status.env };
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-specialisation-lab-'));
    system = await buildLabSystem(status, {
      label: 'special',
      workDir,
      extraConfig: `specialisation.maintenance.configuration = { environment.etc."mode".text = "maintenance\\n"; };
        specialisation.broken.configuration = { lab.failActivation = true; };`,
    });
    maintenance = await realpath(path.join(system, 'specialisation', 'maintenance'));
    await execFileAsync('nix-copy-closure', ['--to', 'root@pi1', system], { env });
  }, 600_000);

  afterAll(async () => {
    await labDown({ instance });
  }, 120_000);

  it('the lab system carries its specialisations as NixOS builds them', () => {
    expect(specialisationsOf(system)).toEqual(['broken', 'maintenance']);
    expect(maintenance).not.toBe(system);
  });

  it('switch to a specialisation: it runs, the system itself is the boot default, status and the host read say which', async () => {
    const context = createBaseContext({ reporter: createCollectingReporter() });
    const first = await activateSystem({ ...target(), toplevel: system, rollback: { enabled: false } }, context);
    expect(first.outcome).toBe('succeeded');
    expect(await running()).toBe(system);
    expect(await mode()).toBe('none');

    const reporter = createCollectingReporter();
    const result = await activateSystem({ ...target(), toplevel: system, specialisation: 'maintenance', rollback: { confirmTimeoutSeconds: 20 } }, createBaseContext({ reporter }));
    expect(result.outcome).toBe('confirmed');
    expect(result.specialisation).toBe('maintenance');
    expect(result.state?.specialisation).toBe('maintenance');
    expect(await running()).toBe(maintenance);
    expect(await profile()).toBe(system);
    expect(await mode()).toBe('maintenance');
    expect(reporter.events).toContainEqual(expect.objectContaining({ type: 'activate-start', toplevel: system, specialisation: 'maintenance' }));

    const session = await connectSsh('deploy@pi1', target().connect!, context);
    try {
      const systems = await readHostSystems(session);
      expect(systems).toMatchObject({ running: maintenance, profile: system, runningSpecialisation: 'maintenance' });
    } finally {
      await session.close();
    }
    const hostStatus = await systemStatus(target(), context);
    expect(hostStatus.runningSpecialisation).toBe('maintenance');
    expect(hostStatus.lastDeployment?.specialisation).toBe('maintenance');
  });

  it('the same specialisation again is skipped; the system itself is then activated (it is not the specialisation)', async () => {
    const reporter = createCollectingReporter();
    const context = createBaseContext({ reporter });
    const again = await activateSystem({ ...target(), toplevel: system, specialisation: 'maintenance' }, context);
    expect(again.outcome).toBe('skipped');
    expect(reporter.events).toContainEqual(expect.objectContaining({ type: 'log', message: expect.stringContaining(`already runs ${system} (specialisation maintenance)`) }));

    const back = await activateSystem({ ...target(), toplevel: system, rollback: { enabled: false } }, context);
    expect(back.outcome).toBe('succeeded');
    expect(await running()).toBe(system);
    expect(await mode()).toBe('none');
    expect((await systemStatus(target(), context)).runningSpecialisation).toBeUndefined();
  });

  it('test a specialisation: it runs, the boot default stays', async () => {
    const context = createBaseContext({ reporter: createCollectingReporter() });
    const tested = await activateSystem({ ...target(), toplevel: system, specialisation: 'maintenance', action: 'test', rollback: { confirmTimeoutSeconds: 20 } }, context);
    expect(tested.outcome).toBe('confirmed');
    expect(await running()).toBe(maintenance);
    expect(await profile()).toBe(system);
  });

  it('an unknown specialisation is refused by the host, naming those the system has; nothing changes', async () => {
    const context = createBaseContext({ reporter: createCollectingReporter() });
    const before = await onConsole('ls /nix/var/nix/profiles');
    await expect(activateSystem({ ...target(), toplevel: system, specialisation: 'nope' }, context)).rejects.toThrow(`${system} has no specialisation nope (it has broken, maintenance)`);
    expect(await running()).toBe(maintenance);
    expect(await onConsole('ls /nix/var/nix/profiles')).toBe(before);
  });

  it('a specialisation whose activation fails rolls the host back to what ran', async () => {
    const context = createBaseContext({ reporter: createCollectingReporter() });
    const generations = await onConsole('ls /nix/var/nix/profiles');
    const failure = await activateSystem({ ...target(), toplevel: system, specialisation: 'broken' }, context).then(
      () => undefined,
      (error: unknown) => error as PideployError,
    );
    expect(failure?.code).toBe('PIDEPLOY_ACTIVATION_FAILED');
    expect(failure?.message).toContain(`activating ${system} (specialisation broken) (switch) on deploy@pi1 failed`);
    expect(failure?.message).toContain('rolled back');
    expect(await running()).toBe(maintenance);
    expect(await profile()).toBe(system);
    expect(await onConsole('ls /nix/var/nix/profiles')).toBe(generations);
  });

  it('boot with a specialisation is refused before the host is touched (a reboot is refused by checkSpecialisationUse: unit tests)', async () => {
    const context = createBaseContext({ reporter: createCollectingReporter() });
    await expect(activateSystem({ ...target(), toplevel: system, specialisation: 'maintenance', action: 'boot' }, context)).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
    expect(await running()).toBe(maintenance);
  });
});
