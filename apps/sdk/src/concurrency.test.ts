import { describe, expect, it } from 'vitest';
import { mapConcurrently } from './concurrency.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('mapConcurrently', () => {
  it('keeps the order of the items, never runs more than the limit at once, and runs up to it', async () => {
    let running = 0;
    let most = 0;
    const delays = [30, 5, 20, 1, 15, 10, 2, 25, 8, 12];
    const results = await mapConcurrently(delays, 3, async (delay, index) => {
      running += 1;
      most = Math.max(most, running);
      await sleep(delay);
      running -= 1;
      return `${index}:${delay}`;
    });
    expect(results).toEqual(delays.map((delay, index) => `${index}:${delay}`));
    expect(most).toBe(3);
  });

  it('handles no items, a limit above the count, and a nonsense limit as 1', async () => {
    expect(await mapConcurrently([], 8, async () => 1)).toEqual([]);
    expect(await mapConcurrently([1, 2], 8, async (item) => item * 2)).toEqual([2, 4]);
    expect(await mapConcurrently([1, 2], 0, async (item) => item + 1)).toEqual([2, 3]);
  });

  it('rejects with the first failure after the calls in flight settle', async () => {
    const finished: number[] = [];
    const error = await mapConcurrently([1, 2, 3], 3, async (item) => {
      await sleep(item * 5);
      if (item === 1) throw new Error('one failed');
      finished.push(item);
      return item;
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toBe('one failed');
    expect(finished).toEqual([2, 3]);
  });
});
