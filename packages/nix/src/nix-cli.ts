import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PideployError, tailLines } from '@pideploy/core';

/** Options of {@link runStreamingCommand} and the nix wrappers. */
export interface StreamingCommandOptions {
  /** Environment variables merged over this process's environment (`undefined` values remove a variable). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Working directory. */
  readonly cwd?: string | undefined;
  /** Bytes or text written to stdin (then closed); stdin is empty without it. */
  readonly input?: string | Uint8Array | undefined;
  /** Stops the process (SIGTERM, so Nix can clean up) when aborted, and rejects with `PIDEPLOY_INTERRUPTED`. */
  readonly signal?: AbortSignal | undefined;
  /** Kills the process after this many milliseconds (the result says `timedOut`). */
  readonly timeoutMs?: number | undefined;
  /** The signal that stops the process after `timeoutMs` (default SIGTERM, which lets Nix clean up). */
  readonly timeoutSignal?: NodeJS.Signals | undefined;
  /** Receives each complete stderr line (without the newline) as it arrives. */
  readonly onStderrLine?: ((line: string) => void) | undefined;
}

/** What a finished command printed, and how it ended. */
export interface StreamingCommandResult {
  /** The argv that ran. */
  readonly command: readonly string[];
  readonly stdout: string;
  /** stdout as the bytes it was (for output that is not text, e.g. a secret). */
  readonly stdoutBytes: Buffer;
  readonly stderr: string;
  /** Exit code; null when a signal ended the process. */
  readonly exitCode: number | null;
  /** The signal that ended the process, if any. */
  readonly signal: string | null;
  /** The process was killed because it ran longer than `timeoutMs`. */
  readonly timedOut: boolean;
}

/**
 * Runs argv (never a shell string) and resolves with its output and exit code: the one place
 * pideploy starts a local process. A non-zero exit is NOT an error here (callers interpret Nix's
 * messages; {@link runProcess} turns it into one). stderr is also streamed line by line to
 * `onStderrLine`, for progress.
 * @throws PideployError `PIDEPLOY_MISSING_TOOL` when the program is not installed,
 *   `PIDEPLOY_COMMAND_FAILED` when it cannot be started, `PIDEPLOY_INTERRUPTED` when `signal` aborts it.
 */
export function runStreamingCommand(argv: readonly string[], options: StreamingCommandOptions = {}): Promise<StreamingCommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('runStreamingCommand needs a non-empty argv');
  const command = [...argv];
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted === true) {
      reject(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `interrupted before ${file} started` }));
      return;
    }
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [name, value] of Object.entries(options.env ?? {})) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    const child = spawn(file, args, {
      env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const stdoutChunks: Buffer[] = [];
    const stderrChunks: Buffer[] = [];
    let pendingLine = '';
    let settled = false;
    let timedOut = false;
    const timeoutSignal = options.timeoutSignal ?? 'SIGTERM';
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill(timeoutSignal);
          }, options.timeoutMs);
    const onAbort = (): void => void child.kill('SIGTERM');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const cleanUp = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    child.stdout?.on('data', (chunk: Buffer) => stdoutChunks.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => {
      stderrChunks.push(chunk);
      if (options.onStderrLine === undefined) return;
      const lines = (pendingLine + chunk.toString('utf8')).split('\n');
      pendingLine = lines.pop() ?? '';
      for (const line of lines) options.onStderrLine(line);
    });
    if (options.input !== undefined) {
      // A program that exits without reading its input must not crash pideploy with EPIPE.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(Buffer.from(options.input));
    }
    child.on('error', (error: NodeJS.ErrnoException) => {
      cleanUp();
      if (settled) return;
      settled = true;
      reject(
        error.code === 'ENOENT'
          ? new PideployError({
              code: 'PIDEPLOY_MISSING_TOOL',
              message: `${file} is not installed (or not on PATH)`,
              hint: file.startsWith('nix') ? 'install Nix (NixOS has it; Debian/Ubuntu: apt install nix-bin)' : `install the package that provides ${file}`,
              cause: error,
              commandFailure: { command, stderrTail: '' },
            })
          : new PideployError({
              code: 'PIDEPLOY_COMMAND_FAILED',
              message: `could not run ${file}: ${error.message}`,
              hint: `check that ${file} is executable and that this machine can start processes (memory, process limits)`,
              cause: error,
              commandFailure: { command, stderrTail: '' },
            }),
      );
    });
    child.on('close', (exitCode, signal) => {
      cleanUp();
      if (settled) return;
      settled = true;
      if (pendingLine !== '' && options.onStderrLine !== undefined) options.onStderrLine(pendingLine);
      const stderr = Buffer.concat(stderrChunks).toString('utf8');
      if (options.signal?.aborted === true) {
        const failure = { command, exitCode: exitCode ?? undefined, signal: signal ?? undefined, stderrTail: tailLines(stderr) };
        reject(new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `interrupted: ${file} was stopped`, commandFailure: failure }));
        return;
      }
      const stdoutBytes = Buffer.concat(stdoutChunks);
      resolve({ command, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr, exitCode, signal, timedOut });
    });
  });
}

/**
 * Runs `nix-build --log-format internal-json <args…>`: each `@nix {…}` log line (and any other
 * stderr line) goes to `options.onStderrLine` as it arrives; stdout holds the out paths.
 */
export function nixBuild(args: readonly string[], options: StreamingCommandOptions = {}): Promise<StreamingCommandResult> {
  return runStreamingCommand(['nix-build', '--log-format', 'internal-json', ...args], options);
}

/**
 * Runs `nix-instantiate <args…>` (plain log format: evaluation errors keep Nix's own text
 * with file:line); stdout holds the derivation paths or `--eval` values.
 */
export function nixInstantiate(args: readonly string[], options: StreamingCommandOptions = {}): Promise<StreamingCommandResult> {
  return runStreamingCommand(['nix-instantiate', ...args], options);
}

/** The environment every pinned evaluation gets: no NIX_PATH (evaluation is pinned or fails). */
export function pinnedNixEnv(env: Readonly<Record<string, string | undefined>> = {}): Record<string, string | undefined> {
  return { ...env, NIX_PATH: '' };
}

/** A project's state directory, beside its pideploy.json: `<projectDir>/.pideploy`. */
export function projectStateDir(projectDir: string): string {
  return path.join(projectDir, '.pideploy');
}

/**
 * Makes a state directory (and `subdirectory` of it) if missing, with a `.gitignore` of `*` in it
 * (written once, never overwritten): GC roots, the fleet cache and its signing key stay out of a
 * project's git repository even when nobody listed `.pideploy` in its `.gitignore`.
 * @returns the path of `subdirectory` (or of the state directory).
 */
export async function ensureStateDir(stateDir: string, subdirectory?: string): Promise<string> {
  await mkdir(stateDir, { recursive: true });
  await writeFile(path.join(stateDir, '.gitignore'), '# made by pideploy: its state (GC roots, cache, keys) is not for git\n*\n', { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const target = subdirectory === undefined ? stateDir : path.join(stateDir, subdirectory);
  if (subdirectory !== undefined) await mkdir(target, { recursive: true });
  return target;
}

/**
 * Where a host's build result is rooted for the garbage collector: `<stateDir>/gcroots/<host>-<what>`
 * (`pi1-toplevel`, `pi1-toplevel.drv`, `pi1-bundle`). The stages write them; commands read them.
 */
export function gcRootPath(stateDir: string, host: string, what: string): string {
  return path.join(gcRootsDir(stateDir), `${host}-${what}`);
}

/** The directory of a project's GC roots, `<stateDir>/gcroots` ({@link gcRootPath}'s). */
export function gcRootsDir(stateDir: string): string {
  return path.join(stateDir, 'gcroots');
}

/** Arguments that keep any nix.conf `nix-path` out of evaluation (with {@link pinnedNixEnv}). */
export const NO_SEARCH_PATH_ARGUMENTS: readonly string[] = ['--option', 'nix-path', ''];
