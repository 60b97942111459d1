/**
 * Every error code pideploy can raise. Codes are stable: scripts may match on them.
 * New codes are added by the packages that raise them.
 */
export type PideployErrorCode =
  | 'PIDEPLOY_USAGE'
  | 'PIDEPLOY_NOT_ROOT'
  | 'PIDEPLOY_MISSING_TOOL'
  | 'PIDEPLOY_COMMAND_FAILED'
  | 'PIDEPLOY_LAB_NOT_UP'
  | 'PIDEPLOY_LAB_UNKNOWN_HOST'
  | 'PIDEPLOY_LAB_SETUP_FAILED'
  | 'PIDEPLOY_INTERRUPTED'
  | (string & { readonly __pideployCode?: never });

/** What a failed subprocess left behind, kept on the error for diagnosis. */
export interface CommandFailure {
  /** The argv that ran (never contains secrets: secrets go through stdin). */
  readonly command: readonly string[];
  /** Exit code, or undefined when the process was killed by a signal. */
  readonly exitCode?: number | undefined;
  /** The signal that killed the process, if any. */
  readonly signal?: string | undefined;
  /** The last lines of stderr (at most {@link STDERR_TAIL_LINES}). */
  readonly stderrTail: string;
}

/** How many lines of a failed command's stderr an error keeps. */
export const STDERR_TAIL_LINES = 25;

/** Options of {@link PideployError}. */
export interface PideployErrorOptions {
  /** Stable machine-readable code, `PIDEPLOY_…`. */
  readonly code: PideployErrorCode;
  /** One line: what happened. */
  readonly message: string;
  /** One line: what the user can do about it. */
  readonly hint?: string | undefined;
  /** The underlying error. */
  readonly cause?: unknown;
  /** True when running the same thing again may succeed (network blips, busy locks). */
  readonly isRetryable?: boolean | undefined;
  /** Present when a subprocess failed. */
  readonly commandFailure?: CommandFailure | undefined;
}

const PIDEPLOY_ERROR_MARKER = Symbol.for('pideploy.error');

/**
 * The one error type of pideploy. `message` says what happened, `hint` what to do.
 * Use {@link PideployError.isInstance} rather than `instanceof`: it also recognises errors
 * created by another copy of this package.
 */
export class PideployError extends Error {
  /** Stable machine-readable code. */
  readonly code: PideployErrorCode;
  /** One line: what the user can do about it. */
  readonly hint: string | undefined;
  /** True when retrying may succeed. */
  readonly isRetryable: boolean;
  /** Present when a subprocess failed. */
  readonly commandFailure: CommandFailure | undefined;
  private readonly [PIDEPLOY_ERROR_MARKER] = true;

  constructor(options: PideployErrorOptions) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PideployError';
    this.code = options.code;
    this.hint = options.hint;
    this.isRetryable = options.isRetryable ?? false;
    this.commandFailure = options.commandFailure;
  }

  /** True for any PideployError, whichever copy of the package created it. */
  static isInstance(value: unknown): value is PideployError {
    return (
      typeof value === 'object' &&
      value !== null &&
      (value as Record<symbol, unknown>)[PIDEPLOY_ERROR_MARKER] === true
    );
  }

  /** A plain JSON view (for `--json` output and events). */
  toJSON(): {
    code: string;
    message: string;
    hint?: string;
    isRetryable: boolean;
    commandFailure?: CommandFailure;
  } {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      isRetryable: this.isRetryable,
      ...(this.commandFailure === undefined ? {} : { commandFailure: this.commandFailure }),
    };
  }
}

/** Keeps the last `maxLines` non-empty lines of a process's stderr. */
export function tailLines(text: string, maxLines: number = STDERR_TAIL_LINES): string {
  const lines = text.replace(/\s+$/u, '').split('\n');
  return lines.slice(-maxLines).join('\n');
}

/**
 * Turns anything thrown into a PideployError, keeping PideployErrors as they are.
 * Unknown errors get code `PIDEPLOY_INTERNAL` and a hint to report a bug.
 */
export function toPideployError(value: unknown): PideployError {
  if (PideployError.isInstance(value)) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new PideployError({
    code: 'PIDEPLOY_INTERNAL',
    message: `unexpected error: ${message}`,
    hint: 'this is a bug in pideploy; rerun with --verbose and report it',
    cause: value,
  });
}
