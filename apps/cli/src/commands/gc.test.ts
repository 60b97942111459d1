import type { CollectGarbageResult } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { describeGarbageResult } from './gc.js';

describe('describeGarbageResult', () => {
  it('says per host what went, what stayed and why, and what was freed', () => {
    const result = {
      version: 1,
      ok: false,
      results: [
        { host: 'pi1', ok: true, garbage: { deletedGenerations: [4, 5], keptGenerations: [{ number: 7, because: ['newest', 'current', 'running'] }, { number: 6, because: ['newest'] }], bootLoaderUpdated: true, pathsDeleted: 310, bytesFreed: 734003200, dryRun: false } },
        { host: 'pi2', ok: true, garbage: { deletedGenerations: [1], keptGenerations: [{ number: 2, because: ['newest', 'current'] }], bootLoaderUpdated: false, dryRun: true } },
        { host: 'pi3', ok: false, error: { message: 'pi3 is busy, nothing was collected', hint: 'wait until it ends' } },
      ],
    } as unknown as CollectGarbageResult;
    expect(describeGarbageResult(result).split('\n')).toEqual([
      'pi1: deleted generations 4, 5; kept 7 (newest, current, running), 6 (newest); 310 store paths, 700.0 MiB freed',
      'pi2: would delete generation 1; kept 2 (newest, current)',
      'pi3: FAILED: pi3 is busy, nothing was collected',
      '  hint: wait until it ends',
    ]);
  });
});
