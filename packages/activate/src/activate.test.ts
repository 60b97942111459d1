import { describe, expect, it } from 'vitest';
import { createBaseContext } from '@pideploy/core';
import type { SshSession } from '@pideploy/ssh';
import { nextPollInterval, systemStatus } from './activate.js';

describe('nextPollInterval', () => {
  it('keeps the interval for the first 3 s, then grows it by half each poll up to 2 s', () => {
    expect(nextPollInterval(300, 2900)).toBe(300);
    const schedule: number[] = [];
    let interval = 300;
    for (let poll = 0; poll < 8; poll += 1) {
      interval = nextPollInterval(interval, 3100 + poll * 1000);
      schedule.push(Math.round(interval));
    }
    expect(schedule).toEqual([450, 675, 1013, 1519, 2000, 2000, 2000, 2000]);
  });

  it('never shortens an interval the caller chose longer than the cap', () => {
    expect(nextPollInterval(5000, 60_000)).toBe(5000);
  });

  it('asks a 60 s activation far fewer than the 200 times a fixed 300 ms would', () => {
    let elapsed = 0;
    let interval = 300;
    let polls = 0;
    while (elapsed < 60_000) {
      elapsed += interval;
      polls += 1;
      interval = nextPollInterval(interval, elapsed);
    }
    expect(polls).toBeLessThan(45);
  });
});

describe('a host command that fails', () => {
  // A stand-in session (unit test): the status script's shell exits 1 with a message.
  const failing = (stderr: string) =>
    ({ display: 'deploy@pi1', host: { alias: 'pi1' }, exec: async () => ({ exitCode: 1, stdout: '', stderr, signal: null }) }) as unknown as SshSession;

  it('says what failed on which host with the output, and what to do', async () => {
    const error = await systemStatus({ target: 'pi1', session: failing('sh: 1: cannot open /run: Permission denied\n') }, createBaseContext()).catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'PIDEPLOY_ACTIVATION_REMOTE_FAILED',
      message: 'reading the status on deploy@pi1 failed (exit 1): sh: 1: cannot open /run: Permission denied',
      hint: expect.stringContaining('--verbose'),
    });
    const silent = await systemStatus({ target: 'pi1', session: failing('') }, createBaseContext()).catch((caught: unknown) => caught);
    expect(silent).toMatchObject({ message: 'reading the status on deploy@pi1 failed (exit 1)' });
  });
});
