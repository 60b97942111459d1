import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PideployError } from '@pideploy/core';
import { BOOT_PROBE_COMMAND, SYSTEMCTL, isRetriedWhileRebooting, parseBootProbe, planReboot, waitForNewBoot, type BootProbe } from './reboot.js';

const toplevel = '/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-nixos-system-pi1-24.05';
const older = '/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-nixos-system-pi1-24.05';
const probe = (fields: Partial<BootProbe> = {}): BootProbe => ({ bootId: '0b6c2a3e-1111-4222-8333-444455556666', booted: older, running: older, profile: toplevel, hasSystemctl: true, ...fields });

describe('the boot probe', () => {
  it('runs as one sh command and reads this machine\'s boot id', () => {
    const [file, ...args] = BOOT_PROBE_COMMAND as [string, ...string[]];
    const parsed = parseBootProbe(execFileSync(file, args, { encoding: 'utf8' }));
    expect(parsed?.bootId).toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    // This machine is not NixOS: no booted system, no system profile, no systemctl at SYSTEMCTL.
    expect(parsed).toMatchObject({ booted: undefined, profile: undefined, hasSystemctl: false });
    expect(SYSTEMCTL).toBe('/run/current-system/sw/bin/systemctl');
  });

  it('parses its lines, and refuses output without a boot id', () => {
    expect(parseBootProbe(`0b6c2a3e-1111-4222-8333-444455556666\n${older}\n${toplevel}\n${toplevel}\nsystemctl\n`)).toEqual({
      bootId: '0b6c2a3e-1111-4222-8333-444455556666',
      booted: older,
      running: toplevel,
      profile: toplevel,
      hasSystemctl: true,
    });
    expect(parseBootProbe('0b6c2a3e-1111-4222-8333-444455556666\n\n\n\n')).toEqual({ bootId: '0b6c2a3e-1111-4222-8333-444455556666', booted: undefined, running: undefined, profile: undefined, hasSystemctl: false });
    expect(parseBootProbe('')).toBeUndefined();
    expect(parseBootProbe('cat: /proc/sys/kernel/random/boot_id: No such file or directory\n')).toBeUndefined();
  });
});

describe('planReboot', () => {
  it('reboots a host whose boot default is the system and that runs another', () => {
    expect(planReboot('pi1', probe(), toplevel)).toEqual({ kind: 'reboot' });
    // Switched to it, but booted before: the reboot boots it (its kernel, its initrd).
    expect(planReboot('pi1', probe({ running: toplevel }), toplevel)).toEqual({ kind: 'reboot' });
  });

  it('skips a reboot that changes nothing, unless forced', () => {
    expect(planReboot('pi1', probe({ booted: toplevel, running: toplevel }), toplevel)).toEqual({ kind: 'not-needed' });
    expect(planReboot('pi1', probe({ booted: toplevel, running: toplevel }), toplevel, true)).toEqual({ kind: 'reboot' });
  });

  it('refuses to reboot a host that would boot another system, or has no systemctl', () => {
    expect(planReboot('pi1', probe({ profile: older }), toplevel)).toMatchObject({ kind: 'refused', message: `pi1 would not boot ${toplevel}: its system profile is ${older}` });
    expect(planReboot('pi1', probe({ profile: undefined }), toplevel)).toMatchObject({ kind: 'refused', message: `pi1 would not boot ${toplevel}: its system profile is unset` });
    expect(planReboot('pi2', probe({ hasSystemctl: false }), toplevel)).toMatchObject({ kind: 'refused', message: `pi2 has no ${SYSTEMCTL} to reboot with` });
  });
});

describe('waitForNewBoot', () => {
  const signal = new AbortController().signal;
  const unreachable = new PideployError({ code: 'PIDEPLOY_SSH_UNREACHABLE', message: 'cannot reach pi1: connect ECONNREFUSED 10.250.1.2:22' });

  it('waits through the old boot and refused connections until a new boot id answers', async () => {
    const answers: (BootProbe | Error | undefined)[] = [probe(), unreachable, undefined, new Error('read ECONNRESET'), probe({ bootId: 'ffffffff-1111-4222-8333-444455556666', running: toplevel })];
    const timeouts: number[] = [];
    const found = await waitForNewBoot({
      host: 'pi1',
      bootId: probe().bootId,
      timeoutMs: 5000,
      pauseMs: 1,
      signal,
      look: async (timeoutMs) => {
        timeouts.push(timeoutMs);
        const answer = answers.shift();
        if (answer instanceof Error) throw answer;
        return answer;
      },
    });
    expect(found).toMatchObject({ bootId: 'ffffffff-1111-4222-8333-444455556666', running: toplevel });
    expect(answers).toEqual([]);
    // Each look gets at most 10 s and at most what is left.
    expect(timeouts.every((ms) => ms >= 1000 && ms <= 5000)).toBe(true);
  });

  it('gives up after its timeout, saying what it last saw', async () => {
    const started = performance.now();
    const waiting = waitForNewBoot({ host: 'pi1', bootId: probe().bootId, timeoutMs: 300, pauseMs: 20, signal, look: async () => Promise.reject(unreachable) });
    await expect(waiting).rejects.toMatchObject({
      code: 'PIDEPLOY_REBOOT_TIMEOUT',
      message: 'pi1 did not come back within 0.3 s of its reboot (last: cannot reach pi1: connect ECONNREFUSED 10.250.1.2:22)',
    });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
    const stillUp = waitForNewBoot({ host: 'pi1', bootId: probe().bootId, timeoutMs: 1000, pauseMs: 50, signal, look: async () => probe() });
    await expect(stillUp).rejects.toThrow('pi1 did not come back within 1 s of its reboot (last: it still ran the boot it was asked to leave)');
  });

  it('stops at once on a changed host key (never waited through, never accepted) and on Ctrl-C', async () => {
    const changed = new PideployError({ code: 'PIDEPLOY_SSH_HOST_KEY_CHANGED', message: 'the host key of pi1 changed' });
    let looks = 0;
    const waiting = waitForNewBoot({ host: 'pi1', bootId: probe().bootId, timeoutMs: 5000, pauseMs: 1, signal, look: async () => {
      looks += 1;
      throw changed;
    } });
    await expect(waiting).rejects.toBe(changed);
    expect(looks).toBe(1);
    const controller = new AbortController();
    const interrupted = waitForNewBoot({ host: 'pi1', bootId: probe().bootId, timeoutMs: 60_000, pauseMs: 30_000, signal: controller.signal, look: async () => probe() });
    setTimeout(() => controller.abort(), 50);
    await expect(interrupted).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
  });

  it('retries what a reboot explains, and nothing else', () => {
    for (const code of ['PIDEPLOY_SSH_CONNECTION_FAILED', 'PIDEPLOY_SSH_TIMEOUT', 'PIDEPLOY_SSH_UNREACHABLE', 'PIDEPLOY_SSH_AUTH_FAILED']) {
      expect(isRetriedWhileRebooting(new PideployError({ code, message: 'x' }))).toBe(true);
    }
    for (const code of ['PIDEPLOY_SSH_HOST_KEY_CHANGED', 'PIDEPLOY_SSH_HOST_KEY_UNKNOWN', 'PIDEPLOY_SSH_HOST_KEY_REVOKED', 'PIDEPLOY_SSH_CONFIG_INVALID', 'PIDEPLOY_REBOOT_REFUSED', 'PIDEPLOY_INTERRUPTED']) {
      expect(isRetriedWhileRebooting(new PideployError({ code, message: 'x' }))).toBe(false);
    }
    expect(isRetriedWhileRebooting(new Error('read ECONNRESET'))).toBe(true);
  });
});
