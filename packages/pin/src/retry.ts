import { setTimeout as sleep } from 'node:timers/promises';
import { PideployError } from '@pideploy/core';

/** How often and how patiently transient failures (5xx, resets, timeouts) are retried. */
export interface RetryPolicy {
  /** Attempts in total, the first included (default 4). 1 means no retries. */
  readonly attempts: number;
  /** Delay before the first retry in milliseconds (default 500); doubles for each further retry. */
  readonly baseDelayMs: number;
  /** Upper bound of one delay in milliseconds (default 8000). */
  readonly maxDelayMs: number;
}

/** The default: 4 attempts, waiting about 0.5 s, 1 s, 2 s (each with jitter) in between. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { attempts: 4, baseDelayMs: 500, maxDelayMs: 8000 };

/** Fills a partial policy with the defaults. */
export function resolveRetryPolicy(partial: Partial<RetryPolicy> | undefined): RetryPolicy {
  return { ...DEFAULT_RETRY_POLICY, ...(partial ?? {}) };
}

/**
 * The delay before retry number `retry` (1 for the first retry): exponential backoff
 * `base · 2^(retry-1)` capped at `maxDelayMs`, with "equal jitter" (a random value between half
 * and all of it). A server's `Retry-After` (seconds) is honoured when it is longer, up to the cap.
 * `random` returns a number in [0, 1) (injectable for tests).
 */
export function retryDelayMs(retry: number, policy: RetryPolicy, retryAfterSeconds?: number, random: () => number = Math.random): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const jittered = exponential / 2 + (exponential / 2) * random();
  const requested = retryAfterSeconds !== undefined && Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
  return Math.round(Math.min(policy.maxDelayMs, Math.max(jittered, requested)));
}

/**
 * True for HTTP statuses worth retrying: 408, 425, 429 and the 5xx server errors except 501 and
 * 505 (which will not change). 404, 410 and other 4xx are final.
 */
export function isTransientHttpStatus(status: number): boolean {
  return status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599 && status !== 501 && status !== 505);
}

const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** True for network error codes worth retrying (resets, refused or timed-out connections, DNS hiccups). */
export function isTransientNetworkCode(code: string | undefined): boolean {
  return code !== undefined && TRANSIENT_NETWORK_CODES.has(code);
}

/** Options of {@link withRetries}. */
export interface WithRetriesOptions {
  /** The policy (attempts, delays). */
  readonly policy: RetryPolicy;
  /** Stops waiting and retrying. */
  readonly signal?: AbortSignal | undefined;
  /** Called before each retry with the error that caused it and the delay. */
  readonly onRetry?: ((error: PideployError, retry: number, delayMs: number) => void) | undefined;
}

/**
 * Runs `operation` until it succeeds, fails with an error that is not retryable
 * (`PideployError.isRetryable` false, or not a PideployError), or the attempts are used up
 * (then the last error is thrown).
 */
export async function withRetries<T>(operation: (attempt: number) => Promise<T>, options: WithRetriesOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!PideployError.isInstance(error) || !error.isRetryable || attempt >= options.policy.attempts || options.signal?.aborted === true) throw error;
      const delay = retryDelayMs(attempt, options.policy);
      options.onRetry?.(error, attempt, delay);
      try {
        await sleep(delay, undefined, options.signal === undefined ? undefined : { signal: options.signal });
      } catch {
        throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'interrupted while waiting to retry', cause: error });
      }
    }
  }
}
