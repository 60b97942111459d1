import { spawn } from 'node:child_process';
import { PideployError, tailLines } from '@pideploy/core';

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
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('runProcess needs a non-empty argv');
  if (options.signal?.aborted === true) {
    throw new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `${file} was not started: interrupted` });
  }
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  const command = [...argv];
  return new Promise<ProcessOutput>((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    let aborted = false;
    let settled = false;
    const child = spawn(file, args, { cwd: options.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, options.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      child.kill('SIGTERM');
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input === undefined ? undefined : Buffer.from(options.input));
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      finish();
      reject(
        error.code === 'ENOENT'
          ? new PideployError({
              code: 'PIDEPLOY_MISSING_TOOL',
              message: `${file} is not installed (or not on PATH)`,
              hint: `install the package that provides ${file}`,
              cause: error,
              commandFailure: { command, stderrTail: '' },
            })
          : new PideployError({
              code: 'PIDEPLOY_COMMAND_FAILED',
              message: `could not run ${file}: ${error.message}`,
              hint: options.failureHint,
              cause: error,
              commandFailure: { command, stderrTail: '' },
            }),
      );
    });
    child.on('close', (exitCode, signal) => {
      if (settled) return;
      settled = true;
      finish();
      const out = Buffer.concat(stdout).toString('utf8');
      const err = Buffer.concat(stderr).toString('utf8');
      const failure = { command, exitCode: exitCode ?? undefined, signal: signal ?? undefined, stderrTail: tailLines(err) };
      if (aborted) {
        reject(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `${file} was interrupted`, commandFailure: failure }));
        return;
      }
      if (timedOut) {
        reject(
          new PideployError({
            code: 'PIDEPLOY_COMMAND_FAILED',
            message: `${options.failureMessage ?? file} did not finish within ${Math.round((options.timeoutMs ?? 0) / 1000)} s`,
            hint: options.failureHint ?? 'try again; if it keeps happening, check the network',
            isRetryable: true,
            commandFailure: failure,
          }),
        );
        return;
      }
      if (exitCode === null) {
        reject(
          new PideployError({
            code: 'PIDEPLOY_COMMAND_FAILED',
            message: `${options.failureMessage ?? `${file} failed`} (killed by ${signal ?? 'a signal'})`,
            hint: options.failureHint,
            commandFailure: failure,
          }),
        );
        return;
      }
      if (exitCode !== 0 && options.allowNonZeroExit !== true) {
        reject(
          new PideployError({
            code: 'PIDEPLOY_COMMAND_FAILED',
            message: `${options.failureMessage ?? `${file} failed`} (exit ${exitCode}): ${lastMeaningfulLine(err || out)}`,
            hint: options.failureHint,
            commandFailure: failure,
          }),
        );
        return;
      }
      resolve({ stdout: out, stderr: err, exitCode });
    });
  });
}
