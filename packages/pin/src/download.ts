import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { PideployError, type PideployContext } from '@pideploy/core';
import { hashTarballNar, type TarballNarResult, type TarballTopLevelRule } from '@pideploy/nix';
import { pinError } from './errors.js';
import { isTransientHttpStatus, isTransientNetworkCode, withRetries, type RetryPolicy } from './retry.js';

/** How far a download has come (for progress bars). */
export interface DownloadProgress {
  /** The URL (or file) being read. */
  readonly url: string;
  /** Bytes received so far (of the possibly compressed archive). */
  readonly bytesReceived: number;
  /** `Content-Length` (or file size) when known. */
  readonly bytesTotal: number | undefined;
  /** Average bytes per second since the download started. */
  readonly bytesPerSecond: number;
  /** True for the last report of a finished download. */
  readonly done: boolean;
}

/** Options of {@link hashTarballUrl}. */
export interface HashTarballUrlOptions {
  /** `fetchTarball` (exactly one top-level entry, for pins) or `nix-prefetch-url` (for `pin hash`). */
  readonly topLevelRule: TarballTopLevelRule;
  /** Extra request headers (never logged). */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Retries for transient failures. */
  readonly retryPolicy: RetryPolicy;
  /** Where large archive members are spilled while hashing (inside the cache directory). */
  readonly tempDirectory?: string | undefined;
  /** Abort a download when no byte arrives for this long (default 60 s). */
  readonly idleTimeoutMs?: number | undefined;
  /** Receives progress (throttled to about 10 reports a second, plus the last one). */
  readonly onProgress?: ((progress: DownloadProgress) => void) | undefined;
}

/** What {@link hashTarballUrl} computed. */
export interface HashedTarball extends TarballNarResult {
  /** Bytes downloaded (the archive's size). */
  readonly downloadedBytes: number;
}

/** The `code` of a network error anywhere in its `cause` chain (undici nests them). */
export function networkErrorCode(error: unknown): string | undefined {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (typeof current === 'object' && current !== null && !seen.has(current)) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code !== '') return code;
    const nested = (current as { errors?: unknown }).errors;
    if (Array.isArray(nested) && nested.length > 0) {
      const inner = networkErrorCode(nested[0]);
      if (inner !== undefined) return inner;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** A PideployError for a failed connection to `url` (pure apart from reading the error). */
export function networkError(url: string, error: unknown): PideployError {
  const code = networkErrorCode(error);
  let host = url;
  try {
    host = new URL(url).host;
  } catch {
    // keep the whole URL
  }
  if (code === 'ECONNREFUSED') {
    return pinError('PIDEPLOY_PIN_NETWORK', `cannot connect to ${host}: connection refused (${url})`, 'check your network and that the server is up; for mirrors check PIDEPLOY_GITHUB_API / PIDEPLOY_GITHUB_ARCHIVE', { cause: error, isRetryable: true });
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return pinError('PIDEPLOY_PIN_NETWORK', `cannot resolve the host name ${host} (${url})`, 'check your network connection and the URL', { cause: error, isRetryable: code === 'EAI_AGAIN' });
  }
  const detail = code ?? (error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error));
  return pinError('PIDEPLOY_PIN_NETWORK', `cannot download ${url}: ${detail}`, 'check your network connection and try again', {
    cause: error,
    isRetryable: isTransientNetworkCode(code),
  });
}

/** A PideployError for an HTTP error status of a download (pure). */
export function httpStatusError(url: string, status: number, statusText: string): PideployError {
  const shown = `HTTP ${status}${statusText === '' ? '' : ` ${statusText}`}`;
  if (status === 404 || status === 410) {
    return pinError('PIDEPLOY_PIN_NOT_FOUND', `${url} does not exist (${shown})`, 'check the URL (for GitHub pins: the repository and commit)');
  }
  return pinError('PIDEPLOY_PIN_HTTP_ERROR', `downloading ${url} failed with ${shown}`, isTransientHttpStatus(status) ? 'the server has a problem; try again later' : 'check the URL and whether it needs credentials', {
    isRetryable: isTransientHttpStatus(status),
  });
}

function progressReporter(url: string, total: number | undefined, onProgress: HashTarballUrlOptions['onProgress']): { chunk(received: number): void; done(received: number): void } {
  const started = Date.now();
  let lastReport = 0;
  const report = (received: number, done: boolean): void => {
    if (onProgress === undefined) return;
    const seconds = (Date.now() - started) / 1000;
    onProgress({ url, bytesReceived: received, bytesTotal: total, bytesPerSecond: seconds > 0 ? received / seconds : 0, done });
  };
  return {
    chunk(received) {
      const now = Date.now();
      if (now - lastReport >= 100) {
        lastReport = now;
        report(received, false);
      }
    },
    done: (received) => report(received, true),
  };
}

async function hashOneAttempt(url: string, options: HashTarballUrlOptions, context: PideployContext): Promise<HashedTarball> {
  const idle = new AbortController();
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  let idleTimer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const armIdleTimer = (): void => {
    if (idleTimer !== undefined) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      timedOut = true;
      idle.abort();
    }, idleTimeoutMs);
  };
  const signal = AbortSignal.any([context.signal, idle.signal]);
  const timeoutError = (received: number): PideployError =>
    pinError('PIDEPLOY_PIN_NETWORK', `downloading ${url} stalled: nothing arrived for ${Math.round(idleTimeoutMs / 1000)} s (after ${received} bytes)`, 'check your network connection and try again', { isRetryable: true });
  armIdleTimer();
  try {
    let response: Response;
    try {
      response = await fetch(url, { headers: { 'accept-encoding': 'identity', 'user-agent': 'pideploy', ...(options.headers ?? {}) }, redirect: 'follow', signal });
    } catch (error) {
      if (timedOut) throw timeoutError(0);
      if (context.signal.aborted) throw interrupted(error);
      throw networkError(url, error);
    }
    if (response.status !== 200 || response.body === null) {
      await response.body?.cancel().catch(() => undefined);
      throw httpStatusError(url, response.status, response.statusText);
    }
    const lengthHeader = response.headers.get('content-length');
    const total = lengthHeader !== null && /^\d+$/u.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const progress = progressReporter(url, total, options.onProgress);
    let received = 0;
    const body = response.body;
    async function* counted(): AsyncGenerator<Uint8Array, void, undefined> {
      try {
        for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
          received += chunk.length;
          armIdleTimer();
          progress.chunk(received);
          yield chunk;
        }
      } catch (error) {
        if (timedOut) throw timeoutError(received);
        if (context.signal.aborted) throw interrupted(error);
        throw pinError(
          'PIDEPLOY_PIN_NETWORK',
          `the download of ${url} broke off after ${received}${total === undefined ? '' : ` of ${total}`} bytes (${networkErrorCode(error) ?? (error as Error).message})`,
          'the connection was cut; check your network and try again',
          { cause: error, isRetryable: true },
        );
      }
      if (total !== undefined && received < total) {
        throw pinError('PIDEPLOY_PIN_NETWORK', `the download of ${url} is truncated: ${received} of ${total} bytes arrived`, 'the connection was cut; check your network and try again', { isRetryable: true });
      }
    }
    const result = await hashTarballNar(counted(), { topLevelRule: options.topLevelRule, tempDirectory: options.tempDirectory, signal: context.signal });
    await body.cancel().catch(() => undefined);
    progress.done(received);
    return { ...result, downloadedBytes: received };
  } catch (error) {
    throw withUrl(url, error);
  } finally {
    if (idleTimer !== undefined) clearTimeout(idleTimer);
  }
}

function interrupted(cause: unknown): PideployError {
  return new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: 'the download was interrupted', cause });
}

/** Prefixes archive errors from @pideploy/nix with the URL they are about (code, hint and retryability kept). */
function withUrl(url: string, error: unknown): unknown {
  if (!PideployError.isInstance(error) || !error.code.startsWith('PIDEPLOY_ARCHIVE') || error.message.includes(url)) return error;
  return new PideployError({ code: error.code, message: `${url}: ${error.message}`, hint: error.hint, cause: error, isRetryable: error.isRetryable });
}

/**
 * Downloads a tarball (http, https or file URL; redirects followed) and computes its NAR hash
 * while it streams in, as Nix 2.8 would for the unpacked archive: nothing is unpacked to disk
 * (large members may spill into `tempDirectory` and are deleted). Transient failures (5xx,
 * resets, refused connections, stalls, cut-off bodies) are retried with exponential backoff;
 * 404 and broken archives are not.
 * @throws PideployError `PIDEPLOY_PIN_NOT_FOUND`, `PIDEPLOY_PIN_HTTP_ERROR`, `PIDEPLOY_PIN_NETWORK`,
 *   the `PIDEPLOY_ARCHIVE_*` codes of @pideploy/nix, `PIDEPLOY_INTERRUPTED`.
 */
export async function hashTarballUrl(url: string, options: HashTarballUrlOptions, context: PideployContext): Promise<HashedTarball> {
  if (url.startsWith('file:')) return hashTarballFile(fileURLToPath(url), options, context, url);
  return withRetries((attempt) => {
    if (attempt > 1) context.reporter.emit({ type: 'log', level: 'info', message: `downloading ${url} (attempt ${attempt} of ${options.retryPolicy.attempts})` });
    return hashOneAttempt(url, options, context);
  }, {
    policy: options.retryPolicy,
    signal: context.signal,
    onRetry: (error, retry, delayMs) =>
      context.reporter.emit({ type: 'log', level: 'warn', message: `${error.message}; retrying in ${(delayMs / 1000).toFixed(1)} s (${retry} of ${options.retryPolicy.attempts - 1} retries)` }),
  });
}

/**
 * The NAR hash of a local tarball (gzip or plain tar), as `nix-prefetch-url --unpack file://…`
 * computes it. Streams the file; nothing is unpacked to disk.
 * @throws PideployError like {@link hashTarballUrl}, `PIDEPLOY_PIN_NOT_FOUND` for a missing file.
 */
export async function hashTarballFile(file: string, options: HashTarballUrlOptions, context: PideployContext, shownAs: string = file): Promise<HashedTarball> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (error) {
    throw pinError('PIDEPLOY_PIN_NOT_FOUND', `cannot read ${shownAs}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'check the path', { cause: error });
  }
  const progress = progressReporter(shownAs, size, options.onProgress);
  let received = 0;
  async function* counted(): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
      received += chunk.length;
      progress.chunk(received);
      yield chunk;
    }
  }
  try {
    const result = await hashTarballNar(counted(), { topLevelRule: options.topLevelRule, tempDirectory: options.tempDirectory, signal: context.signal });
    progress.done(received);
    return { ...result, downloadedBytes: received };
  } catch (error) {
    throw withUrl(shownAs, error);
  }
}
