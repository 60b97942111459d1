import { PideployError } from '@pideploy/core';

/**
 * Error codes raised by `@pideploy/pin` (besides `PIDEPLOY_USAGE` for bad arguments and the
 * `@pideploy/nix` codes, e.g. `PIDEPLOY_HASH_INVALID`, `PIDEPLOY_ARCHIVE_CORRUPT`, which pass through).
 */
export type PinErrorCode =
  /** The repository, branch, tag, commit or URL does not exist (HTTP 404/410/422, no matching ref). */
  | 'PIDEPLOY_PIN_NOT_FOUND'
  /** GitHub's API rate limit is used up (403 with `x-ratelimit-remaining: 0`) and the git fallback failed too. */
  | 'PIDEPLOY_PIN_RATE_LIMITED'
  /** The server could not be reached or the connection broke (refused, reset, timed out, cut short). */
  | 'PIDEPLOY_PIN_NETWORK'
  /** The server answered with an HTTP error that is neither "not found" nor transient. */
  | 'PIDEPLOY_PIN_HTTP_ERROR'
  /** Neither the GitHub API nor `git ls-remote` could resolve the ref. */
  | 'PIDEPLOY_PIN_RESOLVE_FAILED'
  /** A re-downloaded source does not have the hash the lock file records. */
  | 'PIDEPLOY_PIN_HASH_MISMATCH'
  /** `pins.json` is missing. */
  | 'PIDEPLOY_PIN_LOCK_MISSING'
  /** `pins.json` cannot be read or is not a valid version-1 lock file. */
  | 'PIDEPLOY_PIN_LOCK_INVALID'
  /** `pins.json` or `pins.nix` could not be written (the old files are left as they were). */
  | 'PIDEPLOY_PIN_WRITE_FAILED'
  /** `pin add` for a name that is already pinned (without `force`). */
  | 'PIDEPLOY_PIN_EXISTS'
  /** A pin name given to update/verify is not in `pins.json`. */
  | 'PIDEPLOY_PIN_UNKNOWN'
  /** `pins.nix` is missing or differs from what `pins.json` generates (edited by hand, or left behind). */
  | 'PIDEPLOY_PIN_NIX_STALE';

/** Builds a PideployError with one of this package's codes. */
export function pinError(
  code: PinErrorCode,
  message: string,
  hint: string,
  options: { readonly cause?: unknown; readonly isRetryable?: boolean } = {},
): PideployError {
  return new PideployError({ code, message, hint, cause: options.cause, isRetryable: options.isRetryable });
}

/** A usage error (exit code 2 in the CLI). */
export function usageError(message: string, hint: string): PideployError {
  return new PideployError({ code: 'PIDEPLOY_USAGE', message, hint });
}
