import type { RunOnHostsResult } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { describeRunOnHostsResult } from './exec.js';

describe('describeRunOnHostsResult', () => {
  it('says nothing when every host exited 0, else one line per host that did not', () => {
    const ok = { version: 1, ok: true, results: [{ host: 'pi1', ok: true, exitCode: 0, durationMs: 5 }] } as unknown as RunOnHostsResult;
    expect(describeRunOnHostsResult(ok)).toBe('');
    const mixed = {
      version: 1,
      ok: false,
      results: [
        { host: 'pi1', ok: true, exitCode: 0, durationMs: 5 },
        { host: 'pi2', ok: false, exitCode: 3, durationMs: 5 },
        { host: 'pi3', ok: false, exitCode: null, signal: 'KILL', durationMs: 5 },
        { host: 'pi4', ok: false, exitCode: null, signal: 'TERM', timedOut: true, durationMs: 2000 },
        { host: 'pi5', ok: false, durationMs: 5, error: { message: 'cannot reach pi5', hint: 'is it on?' } },
      ],
    } as unknown as RunOnHostsResult;
    expect(describeRunOnHostsResult(mixed).split('\n')).toEqual(['pi2: exit 3', 'pi3: killed by KILL', 'pi4: stopped after 2.0 s (--timeout)', 'pi5: did not run: cannot reach pi5', '  hint: is it on?']);
  });
});
