import type { SystemStatus } from '@pideploy/activate';
import { describe, expect, it } from 'vitest';
import { formatStatusLines, statusKeyFiles, type HostStatusFailure } from './activate.js';

const system = (hash: string, name: string) => `/nix/store/${hash.repeat(32)}-${name}`;

const host = (fields: Partial<SystemStatus> & { host: string }): SystemStatus => ({
  runningSystem: undefined,
  bootedSystem: undefined,
  profileSystem: undefined,
  generations: [],
  currentConfiguration: undefined,
  manifest: undefined,
  lastDeployment: undefined,
  rebootNeededFor: [],
  ...fields,
});

describe('formatStatusLines (pideploy status --short)', () => {
  it('gives each host one line: generation, running system, last deployment, and what needs a look', () => {
    const a = system('a', 'nixos-system-pi1-24.05');
    const b = system('b', 'nixos-system-pi2-24.11');
    const results: (SystemStatus | HostStatusFailure)[] = [
      host({
        host: 'pi1',
        runningSystem: a,
        profileSystem: a,
        generations: [
          { number: 41, date: '2026-12-06 10:00:00', current: false },
          { number: 42, date: '2026-12-07 10:00:00', current: true },
        ],
        lastDeployment: { action: 'switch', state: 'confirmed' } as unknown as SystemStatus['lastDeployment'],
      }),
      host({ host: 'kitchen-pi', runningSystem: a, profileSystem: b, generations: [{ number: 7, date: '2026-12-07 10:00:00', current: true }], rebootNeededFor: ['kernel', 'initrd'] }),
      { host: 'pi3', error: { code: 'PIDEPLOY_SSH_UNREACHABLE', message: 'cannot reach pi3', hint: undefined } },
      // Rolled back since its last deployment: it runs and boots a, its deployed bundle holds b.
      host({ host: 'pi4', runningSystem: a, profileSystem: a, deployedSystem: b, generations: [{ number: 3, date: '2026-12-07 10:00:00', current: true }] }),
      // Deployed with boot, not rebooted yet: it boots the deployed system next, nothing has left it.
      host({ host: 'pi5', runningSystem: a, profileSystem: b, deployedSystem: b, generations: [{ number: 4, date: '2026-12-07 10:00:00', current: true }] }),
    ];
    expect(formatStatusLines(results).split('\n')).toEqual([
      'host        gen  running                 last deployment     notes',
      'pi1          42  nixos-system-pi1-24.05  switch → confirmed  ok',
      'kitchen-pi    7  nixos-system-pi1-24.05  -                   boots nixos-system-pi2-24.11 next; reboot needed (kernel, initrd)',
      'pi3           -  -                       -                   error: cannot reach pi3',
      "pi4           3  nixos-system-pi1-24.05  -                   not on its deployed bundle's system (rolled back or switched by hand since)",
      'pi5           4  nixos-system-pi1-24.05  -                   boots nixos-system-pi2-24.11 next',
    ]);
  });

  it('says which specialisation of its system a host runs, instead of "boots … next"', () => {
    const b = system('b', 'nixos-system-pi2-24.11');
    const kiosk = system('c', 'nixos-system-pi2-24.11');
    const lines = formatStatusLines([
      host({ host: 'pi6', runningSystem: kiosk, profileSystem: b, runningSpecialisation: 'kiosk', deployedSystem: b, generations: [{ number: 9, date: '2026-12-08 10:00:00', current: true }] }),
    ]);
    expect(lines.split('\n')).toEqual([
      'host  gen  running                 last deployment  notes',
      'pi6     9  nixos-system-pi2-24.11  -                specialisation kiosk',
    ]);
  });
});

describe('statusKeyFiles (the host\'s record of key files, in pideploy status)', () => {
  const boot = '# boot 8a1c4e0e-0f7c-4b7b-9a53-0d6f3f1e2a11';

  it('splits the files into those pideploy.json still names, old ones and missing ones; lines that are no key file are left out', () => {
    const status = host({ host: 'pi1', bootId: '8a1c4e0e-0f7c-4b7b-9a53-0d6f3f1e2a11', alsoRead: [boot, '/run/keys/wifi.psk', '/etc/secrets/old.key', 'garbage', '/etc/secrets/'] });
    expect(statusKeyFiles(status, new Set(['/run/keys/wifi.psk', '/run/keys/new.key']))).toEqual({ current: ['/run/keys/wifi.psk'], old: ['/etc/secrets/old.key'], missing: ['/run/keys/new.key'] });
    // Not a host of pideploy.json (an SSH target): none is called old or missing.
    expect(statusKeyFiles(status, undefined)).toEqual({ current: ['/run/keys/wifi.psk', '/etc/secrets/old.key'], old: [], missing: [] });
    expect(statusKeyFiles(host({ host: 'pi2' }), new Set())).toEqual({ current: [], old: [], missing: [] });
  });

  it('calls the keys under /run missing once the host booted since the record was written', () => {
    const rebooted = host({ host: 'pi1', bootId: 'another-boot', alsoRead: [boot, '/run/keys/wifi.psk', '/var/lib/secrets/token'] });
    const wanted = new Set(['/run/keys/wifi.psk', '/var/lib/secrets/token']);
    expect(statusKeyFiles(rebooted, wanted)).toEqual({ current: ['/var/lib/secrets/token'], old: [], missing: ['/run/keys/wifi.psk'] });
    expect(formatStatusLines([rebooted], () => wanted).split('\n')[1]).toMatch(/ 1 key missing$/u);
  });
});
