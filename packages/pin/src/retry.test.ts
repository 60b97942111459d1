import { describe, expect, it } from 'vitest';
import { PideployError } from '@pideploy/core';
import { DEFAULT_RETRY_POLICY, isTransientHttpStatus, isTransientNetworkCode, retryDelayMs, withRetries } from './retry.js';

describe('retry policy', () => {
  it('backs off exponentially with equal jitter, capped, honouring longer Retry-After', () => {
    const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000 };
    expect([1, 2, 3, 4, 5].map((retry) => retryDelayMs(retry, policy, undefined, () => 0))).toEqual([50, 100, 200, 400, 500]);
    expect([1, 2, 3, 4, 5].map((retry) => retryDelayMs(retry, policy, undefined, () => 0.999999))).toEqual([100, 200, 400, 800, 1000]);
    expect(retryDelayMs(1, policy, 0.5, () => 0)).toBe(500);
    expect(retryDelayMs(1, policy, 60, () => 0)).toBe(1000);
    expect(DEFAULT_RETRY_POLICY.attempts).toBeGreaterThan(1);
  });

  it('retries 5xx, 408, 429 and resets, never 404 or other 4xx', () => {
    expect([500, 502, 503, 504, 408, 429].every(isTransientHttpStatus)).toBe(true);
    expect([200, 400, 401, 403, 404, 410, 422, 501, 505].some(isTransientHttpStatus)).toBe(false);
    expect(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'UND_ERR_SOCKET'].every(isTransientNetworkCode)).toBe(true);
    expect(isTransientNetworkCode('ENOTFOUND')).toBe(false);
    expect(isTransientNetworkCode(undefined)).toBe(false);
  });

  it('retries retryable PideployErrors until the attempts are used up', async () => {
    const policy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 };
    let calls = 0;
    const retried: number[] = [];
    const flaky = () => {
      calls += 1;
      if (calls < 3) throw new PideployError({ code: 'PIDEPLOY_PIN_NETWORK', message: 'reset', isRetryable: true });
      return Promise.resolve('ok');
    };
    await expect(withRetries(async () => flaky(), { policy, onRetry: (_error, retry) => retried.push(retry) })).resolves.toBe('ok');
    expect(retried).toEqual([1, 2]);

    calls = 0;
    await expect(withRetries(async () => { calls += 1; throw new PideployError({ code: 'PIDEPLOY_PIN_NETWORK', message: 'down', isRetryable: true }); }, { policy })).rejects.toThrow('down');
    expect(calls).toBe(3);
    calls = 0;
    await expect(withRetries(async () => { calls += 1; throw new PideployError({ code: 'PIDEPLOY_PIN_NOT_FOUND', message: '404' }); }, { policy })).rejects.toThrow('404');
    expect(calls).toBe(1);
  });
});
