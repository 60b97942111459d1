import type { UploadKeysResult } from '@pideploy/sdk';
import { describe, expect, it } from 'vitest';
import { describeUploadKeysResult } from './keys.js';

describe('describeUploadKeysResult', () => {
  it('one line per host: what was installed, what was left alone, what failed and its hint', () => {
    const result = {
      version: 1,
      ok: false,
      results: [
        { host: 'pi1', ok: true, keys: [{ name: 'a', path: '/run/keys/a', changed: true }, { name: 'b', path: '/run/keys/b', changed: false }] },
        { host: 'pi2', ok: true, keys: [{ name: 'a', path: '/run/keys/a', changed: false }] },
        { host: 'pi3', ok: true, keys: [] },
        { host: 'pi4', ok: false, keys: [], error: { message: 'uploading keys to pi4 failed: key a: there is no user svc on pi4', hint: 'create it on the host first' } },
      ],
    } as unknown as UploadKeysResult;
    expect(describeUploadKeysResult(result, false).split('\n')).toEqual([
      'pi1: installed /run/keys/a; 1 unchanged',
      'pi2: nothing changed',
      'pi3: no keys',
      'pi4: FAILED: uploading keys to pi4 failed: key a: there is no user svc on pi4',
      '  hint: create it on the host first',
    ]);
  });
});
