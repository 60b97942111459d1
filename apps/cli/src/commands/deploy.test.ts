import type { DeployResult } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { describeDeployResult } from './deploy.js';

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

  it('says nothing of reboots when no host needs one', () => {
    const result = { version: 1, ok: true, results: [{ host: 'pi1', ok: true, phases, activation: { outcome: 'confirmed' } }] } as unknown as DeployResult;
    expect(describeDeployResult(result)).not.toContain('reboot');
  });
});
