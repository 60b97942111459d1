import { describe, expect, it } from 'vitest';
import { nextPollInterval } from './activate.js';

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
