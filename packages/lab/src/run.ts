import { PideployError, tailLines } from '@pideploy/core';
import { execa, type Options as ExecaOptions } from 'execa';

/** Options of {@link runCommand}. */
export interface RunCommandOptions {
  /** Text written to the process's stdin (then closed). */
  readonly input?: string | Buffer | undefined;
  /** Working directory. */
  readonly cwd?: string | undefined;
  /** Extra environment variables (merged over the current environment). */
  readonly env?: Readonly<Record<string, string>> | undefined;
  /** Cancels the command. */
  readonly signal?: AbortSignal | undefined;
  /** Kill after this many milliseconds. */
  readonly timeoutMs?: number | undefined;
  /** What to say when the command fails (default: "`argv0` failed"). */
  readonly failureMessage?: string | undefined;
  /** Hint on failure. */
  readonly failureHint?: string | undefined;
}

/** What a finished command printed. */
export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

/**
 * Runs argv (never a shell string) and returns its output; a non-zero exit becomes a
 * PideployError that keeps the command, exit code and stderr tail.
 */
export async function runCommand(argv: readonly string[], options: RunCommandOptions = {}): Promise<CommandOutput> {
  const result = await runCommandAllowingFailure(argv, options);
  if (result.exitCode !== 0) {
    const [file] = argv;
    throw new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: `${options.failureMessage ?? `${file} failed`} (exit ${result.exitCode}): ${lastLine(result.stderr || result.stdout)}`,
      hint: options.failureHint,
      commandFailure: { command: [...argv], exitCode: result.exitCode, stderrTail: tailLines(result.stderr) },
    });
  }
  return result;
}

/** Like {@link runCommand} but returns non-zero exits instead of throwing. */
export async function runCommandAllowingFailure(
  argv: readonly string[],
  options: RunCommandOptions = {},
): Promise<CommandOutput> {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('runCommand needs a non-empty argv');
  const execaOptions: ExecaOptions = {
    reject: false,
    stripFinalNewline: false,
    ...(options.input === undefined ? { stdin: 'ignore' } : { input: options.input }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.signal === undefined ? {} : { cancelSignal: options.signal }),
    ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
  };
  try {
    const result = await execa(file, args, execaOptions);
    if (result.failed && result.exitCode === undefined) {
      throw new PideployError({
        code: result.code === 'ENOENT' ? 'PIDEPLOY_MISSING_TOOL' : 'PIDEPLOY_COMMAND_FAILED',
        message:
          result.code === 'ENOENT'
            ? `${file} is not installed (or not on PATH)`
            : `${file} did not finish: ${result.shortMessage}`,
        hint: result.code === 'ENOENT' ? `install the package that provides ${file}` : undefined,
        commandFailure: {
          command: [...argv],
          signal: result.signal,
          stderrTail: tailLines(String(result.stderr ?? '')),
        },
      });
    }
    return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? 1 };
  } catch (error) {
    if (PideployError.isInstance(error)) throw error;
    throw new PideployError({
      code: 'PIDEPLOY_COMMAND_FAILED',
      message: `could not run ${file}: ${(error as Error).message}`,
      cause: error,
      commandFailure: { command: [...argv], stderrTail: '' },
    });
  }
}

/** The most telling line of a failed command's output: the last one not indented as a continuation. */
function lastLine(text: string): string {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const unindented = lines.filter((line) => !/^\s/u.test(line));
  return (unindented[unindented.length - 1] ?? lines[lines.length - 1] ?? '').trim();
}
