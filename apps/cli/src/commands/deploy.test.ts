import type { DeployResult, ResolvedConfig, ResolvedHost } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { describeDeployResult, orderCanaries, withTarget } from './deploy.js';

const phases = [
  { phase: 'connect', durationMs: 700 },
  { phase: 'activate', durationMs: 1200 },
] as const;

describe('describeDeployResult', () => {
  it('ends with the hosts that need a reboot to run their new kernel, and the command that does it', () => {
    const result = {
      version: 1,
      ok: false,
      results: [
        { host: 'pi1', ok: true, phases, activation: { outcome: 'confirmed' }, rebootNeededFor: ['kernel', 'initrd'] },
        { host: 'pi2', ok: true, phases, activation: { outcome: 'confirmed' } },
        { host: 'pi3', ok: true, phases, activation: { outcome: 'skipped' }, rebootNeededFor: ['kernel-modules'] },
        { host: 'pi4', ok: false, phases, error: { message: 'pi4 is unreachable', hint: 'check its network' } },
      ],
    } as unknown as DeployResult;
    expect(describeDeployResult(result).split('\n')).toEqual([
      'host       result      connect    build   bundle     diff     copy activate',
      'pi1        confirmed    700 ms        -        -        -        -    1.2 s',
      'pi2        confirmed    700 ms        -        -        -        -    1.2 s',
      'pi3        skipped      700 ms        -        -        -        -    1.2 s',
      'pi4        FAILED       700 ms        -        -        -        -    1.2 s',
      'pi4: pi4 is unreachable',
      '  hint: check its network',
      'reboot needed: pi1, pi3 (a new kernel, initrd or kernel modules load only at a boot): pideploy deploy pi1 pi3 --reboot',
    ]);
  });

  it('shows the keys column when a host uploaded keys, the time of both uploads summed', () => {
    const keyed = [{ phase: 'connect', durationMs: 700 }, { phase: 'keys', durationMs: 150 }, { phase: 'activate', durationMs: 1200 }, { phase: 'keys', durationMs: 250 }];
    const result = {
      version: 1,
      ok: true,
      results: [
        { host: 'pi1', ok: true, phases: keyed, activation: { outcome: 'confirmed' } },
        { host: 'pi2', ok: true, phases, activation: { outcome: 'confirmed' } },
      ],
    } as unknown as DeployResult;
    expect(describeDeployResult(result).split('\n')).toEqual([
      'host       result      connect    build   bundle     diff     copy     keys activate',
      'pi1        confirmed    700 ms        -        -        -        -   400 ms    1.2 s',
      'pi2        confirmed    700 ms        -        -        -        -        -    1.2 s',
    ]);
  });

  it('ends with --failed when a host did not succeed and the outcome was recorded', () => {
    const result = { version: 1, ok: false, results: [{ host: 'pi1', ok: false, phases, error: { message: 'down' } }] } as unknown as DeployResult;
    expect(describeDeployResult(result, { recorded: true }).split('\n').at(-1)).toBe('again for the hosts that did not succeed: pideploy deploy --failed');
    expect(describeDeployResult(result)).not.toContain('--failed');
    expect(describeDeployResult({ ...result, ok: true, results: [] }, { recorded: true })).not.toContain('--failed');
  });

  it('says nothing of reboots when no host needs one', () => {
    const result = { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases, activation: { outcome: 'confirmed' } }] } as unknown as DeployResult;
    expect(describeDeployResult(result)).not.toContain('reboot');
  });
});

describe('describeDeployResult with hosts held back', () => {
  it('shows them as "not run" and names them once, with the command that deploys them', () => {
    const notStarted = (host: string) => ({ host, ok: false, phases: [], error: { code: 'PIDEPLOY_HOST_NOT_STARTED', message: `${host} was not started: the canary pi1 failed`, hint: 'fix that host' } });
    const result = {
      version: 1,
      ok: false,
      results: [{ host: 'pi1', ok: false, phases, error: { code: 'PIDEPLOY_ACTIVATION_FAILED', message: 'pi1 rolled back', hint: 'see its journal' } }, notStarted('pi2'), notStarted('pi3')],
    } as unknown as DeployResult;
    expect(describeDeployResult(result).split('\n')).toEqual([
      'host       result      connect    build   bundle     diff     copy activate',
      'pi1        FAILED       700 ms        -        -        -        -    1.2 s',
      'pi2        not run           -        -        -        -        -        -',
      'pi3        not run           -        -        -        -        -        -',
      'pi1: pi1 rolled back',
      '  hint: see its journal',
      'not started: pi2, pi3 (the canary pi1 failed)',
      '  hint: once the failed hosts are fixed: pideploy deploy pi2 pi3',
    ]);
  });
});

describe('orderCanaries', () => {
  const host = (name: string, tags: string[] = []) => ({ name, tags }) as unknown as ResolvedHost;
  const config = { file: '/p/pideploy.json', hosts: [host('pi1'), host('pi2', ['canary']), host('pi3'), host('pi4', ['canary'])] } as unknown as ResolvedConfig;

  it('takes a number as the first N selected hosts, in their order', () => {
    expect(orderCanaries(config, config.hosts, ['2'])).toEqual({ hosts: config.hosts, canary: 2 });
    expect(orderCanaries(config, config.hosts, [])).toEqual({ hosts: config.hosts, canary: 0 });
  });

  it('moves the hosts named or tagged to the front', () => {
    const ordered = orderCanaries(config, config.hosts, ['@canary']);
    expect([ordered.hosts.map((item) => item.name), ordered.canary]).toEqual([['pi2', 'pi4', 'pi1', 'pi3'], 2]);
    const named = orderCanaries(config, config.hosts, ['pi3', 'pi1']);
    expect([named.hosts.map((item) => item.name), named.canary]).toEqual([['pi1', 'pi3', 'pi2', 'pi4'], 2]);
  });

  it("takes pideploy.json's canaries that are among the selected hosts, and none when no canary is", () => {
    const selected = [config.hosts[0]!, config.hosts[1]!, config.hosts[2]!];
    const ordered = orderCanaries(config, selected, ['@canary'], { fromConfig: true });
    expect([ordered.hosts.map((item) => item.name), ordered.canary]).toEqual([['pi2', 'pi1', 'pi3'], 1]);
    const none = orderCanaries(config, [config.hosts[0]!], ['@canary'], { fromConfig: true });
    expect([none.hosts.map((item) => item.name), none.canary]).toEqual([['pi1'], 0]);
  });

  it('refuses a canary outside the selection, zero, and a number mixed with names', () => {
    const selected = config.hosts.slice(0, 2);
    expect(() => orderCanaries(config, selected, ['pi3'])).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE', message: 'the canary pi3 is not among the hosts to deploy' }));
    expect(() => orderCanaries(config, config.hosts, ['0'])).toThrow(expect.objectContaining({ code: 'PIDEPLOY_USAGE' }));
    expect(() => orderCanaries(config, config.hosts, ['1', 'pi2'])).toThrow(/--canary takes one number/u);
    expect(() => orderCanaries(config, config.hosts, ['pi9'])).toThrow(expect.objectContaining({ code: 'PIDEPLOY_UNKNOWN_HOST' }));
  });
});

describe('withTarget (--target)', () => {
  const host = (name: string) => ({ name, target: `deploy@${name}.local` }) as unknown as ResolvedHost;

  it("reaches the one selected host at the given target, keeping its other settings", () => {
    expect(withTarget([host('pi1')], 'deploy@192.168.1.50:2222')).toEqual([{ name: 'pi1', target: 'deploy@192.168.1.50:2222' }]);
    expect(withTarget([host('pi1'), host('pi2')], undefined)).toEqual([host('pi1'), host('pi2')]);
  });

  it('refuses several hosts', () => {
    expect(() => withTarget([host('pi1'), host('pi2')], 'deploy@10.0.0.5')).toThrow("--target replaces one host's SSH target, but 2 hosts are selected (pi1, pi2)");
  });
});
