import { PideployError, tailLines } from '@pideploy/core';
import { runStreamingCommand } from './nix-cli.js';

/** Options of {@link runProcess}. */
export interface RunProcessOptions {
  /** Bytes or text written to the process's stdin, which is then closed (default: stdin is empty). */
  readonly input?: string | Uint8Array | undefined;
  /** Working directory (default: this process's). */
  readonly cwd?: string | undefined;
  /** Environment variables merged over this process's environment (`undefined` values remove a variable). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Stops the process (SIGTERM) and rejects with `PIDEPLOY_INTERRUPTED`. */
  readonly signal?: AbortSignal | undefined;
  /** Kills the process after this many milliseconds and rejects with a retryable `PIDEPLOY_COMMAND_FAILED`. */
  readonly timeoutMs?: number | undefined;
  /** Return non-zero exits instead of throwing (default false). */
  readonly allowNonZeroExit?: boolean | undefined;
  /** What the error says when the command fails (default: "`argv[0]` failed"). */
  readonly failureMessage?: string | undefined;
  /** The error's hint when the command fails. */
  readonly failureHint?: string | undefined;
}

/** What a finished process printed and how it exited. */
export interface ProcessOutput {
  /** Everything it wrote to stdout (UTF-8). */
  readonly stdout: string;
  /** Everything it wrote to stderr (UTF-8). */
  readonly stderr: string;
  /** Its exit code (0 unless `allowNonZeroExit`). */
  readonly exitCode: number;
}

/** `250 ms`, `30 s`. */
function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** The most telling line of a failed command's output: the last one not indented as a continuation. */
function lastMeaningfulLine(text: string): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const unindented = lines.filter((line) => !/^\s/u.test(line));
  return (unindented[unindented.length - 1] ?? lines[lines.length - 1] ?? '').trim();
}

/**
 * Runs a local command from an argv array (never a shell string) and collects its output: the
 * one local process runner the stages use (e.g. `git ls-remote`). A non-zero exit, a missing
 * program, a timeout or a kill becomes a `PideployError` that keeps the command, the exit code
 * (or signal) and the tail of stderr.
 * @throws PideployError `PIDEPLOY_COMMAND_FAILED` (non-zero exit, timeout (retryable), signal),
 *   `PIDEPLOY_MISSING_TOOL` (program not found), `PIDEPLOY_INTERRUPTED` (aborted by `signal`).
 */
export async function runProcess(argv: readonly string[], options: RunProcessOptions = {}): Promise<ProcessOutput> {
  const [file] = argv;
  if (file === undefined) throw new TypeError('runProcess needs a non-empty argv');
  const result = await runStreamingCommand(argv, {
    input: options.input,
    cwd: options.cwd,
    env: options.env,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
    timeoutSignal: 'SIGKILL',
  }).catch((error: unknown) => {
    // Only the hint is the caller's to add to a failure to start.
    if (PideployError.isInstance(error) && error.code === 'PIDEPLOY_COMMAND_FAILED' && options.failureHint !== undefined) {
      throw new PideployError({ code: error.code, message: error.message, hint: options.failureHint, cause: error.cause, commandFailure: error.commandFailure });
    }
    throw error;
  });
  const { stdout, stderr, exitCode, signal } = result;
  const failure = { command: result.command, exitCode: exitCode ?? undefined, signal: signal ?? undefined, stderrTail: tailLines(stderr) };
  if (result.timedOut) {
    throw new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: `${options.failureMessage ?? file} did not finish within ${formatDuration(options.timeoutMs ?? 0)}`,
      hint: options.failureHint ?? 'try again; if it keeps happening, check the network',
      isRetryable: true,
      commandFailure: failure,
    });
  }
  if (exitCode === null) {
    throw new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: `${options.failureMessage ?? `${file} failed`} (killed by ${signal ?? 'a signal'})`,
      hint: options.failureHint,
      commandFailure: failure,
    });
  }
  if (exitCode !== 0 && options.allowNonZeroExit !== true) {
    throw new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: `${options.failureMessage ?? `${file} failed`} (exit ${exitCode}): ${lastMeaningfulLine(stderr || stdout)}`,
      hint: options.failureHint,
      commandFailure: failure,
    });
  }
  return { stdout, stderr, exitCode };
}
