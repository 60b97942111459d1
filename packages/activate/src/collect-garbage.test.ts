import { describe, expect, it } from 'vitest';
import { collectSystemGarbage, parseSystemGarbageOutput } from './collect-garbage.js';

describe('parseSystemGarbageOutput', () => {
  it("reads the script's report: generations kept with why, deleted ones oldest first, the boot loader and what Nix freed", () => {
    const stdout = 'keep 9 newest,current,running\nkeep 8 newest\ndelete 7\nkeep 3 booted\ndelete 2\nboot-loader ok\ngc 12 store paths deleted, 1.50 MiB freed\n';
    expect(parseSystemGarbageOutput(stdout, false)).toEqual({
      version: 1,
      deletedGenerations: [2, 7],
      keptGenerations: [
        { number: 9, because: ['newest', 'current', 'running'] },
        { number: 8, because: ['newest'] },
        { number: 3, because: ['booted'] },
      ],
      bootLoaderUpdated: true,
      pathsDeleted: 12,
      bytesFreed: 1572864,
      dryRun: false,
    });
  });

  it('leaves the numbers out when Nix did not say them, and refuses lines it does not print', () => {
    expect(parseSystemGarbageOutput('keep 1 newest,current\nboot-loader failed\ngc \n', false)).toMatchObject({ bootLoaderUpdated: false, pathsDeleted: undefined, bytesFreed: undefined });
    expect(parseSystemGarbageOutput('keep 2 newest\ndelete 1\n', true)).toMatchObject({ deletedGenerations: [1], dryRun: true });
    expect(parseSystemGarbageOutput('keep 1 newest\nsomething else\n', false)).toBeUndefined();
  });

  it('refuses to keep fewer than one generation before touching the host', async () => {
    const sudo = { exec: () => Promise.reject(new Error('must not run')) } as never;
    await expect(collectSystemGarbage({ host: 'pi1', sudo, keep: 0 }, { reporter: { emit: () => {} }, signal: new AbortController().signal })).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
  });
});
