/**
 * Helpers for the CLI's lab tests: they run the BUILT `pideploy` (`dist/bin.js`, so `pnpm build`
 * first), as a user would, in a child process.
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { shellJoin } from '@pideploy/core';
import { LAB_SUDO_PASSWORD } from '@pideploy/lab';

/** The built `pideploy` entry point. */
export const BUILT_PIDEPLOY_BIN = fileURLToPath(new URL('../../dist/bin.js', import.meta.url));

/** What a finished `pideploy` run printed, and its exit code. */
export interface PideployRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/**
 * Runs `pideploy ARGS` (the built binary, this Node) and returns its output and exit code; never
 * throws for a non-zero exit. `input` is written to its stdin (e.g. for `--sudo-password-stdin`).
 */
export async function runBuiltPideploy(
  args: readonly string[],
  options: { readonly env?: NodeJS.ProcessEnv | undefined; readonly cwd?: string | undefined; readonly input?: string | undefined } = {},
): Promise<PideployRun> {
  return await new Promise((resolve) => {
    const child = execFile(process.execPath, [BUILT_PIDEPLOY_BIN, ...args], { env: options.env, cwd: options.cwd, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      resolve({ stdout, stderr, code: error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1 });
    });
    child.stdin?.end(options.input ?? '');
  });
}

/** {@link runBuiltPideploy} with `--sudo-password-stdin` and the lab's sudo password on stdin. */
export function runBuiltPideployWithLabSudo(args: readonly string[], options: { readonly env: NodeJS.ProcessEnv; readonly cwd: string }): Promise<PideployRun> {
  return runBuiltPideploy([...args, '--sudo-password-stdin'], { ...options, input: `${LAB_SUDO_PASSWORD}\n` });
}

/** The per-host results of `pideploy deploy --json`: its last NDJSON line's `result.results` (none when that line is no result). */
export function deployResultsOf<HostResult>(stdout: string): readonly HostResult[] {
  const last = stdout.trim().split('\n').at(-1) ?? '{}';
  return (JSON.parse(last) as { result?: { results?: readonly HostResult[] } }).result?.results ?? [];
}

/** Options of {@link runBuiltPideployOnTerminal}. */
export interface TerminalRunOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd?: string | undefined;
  /** The prompt text to answer, e.g. `[sudo] password for deploy@pi1: ` (a RegExp: any of several prompts, in the order they show). */
  readonly prompt: string | RegExp;
  /** `keys[n]` is typed once the n-th prompt shows. */
  readonly keys: readonly string[];
  /** How long the "person" takes to type an answer (default: at once). */
  readonly typeDelayMs?: number | undefined;
}

/**
 * Runs the built `pideploy ARGS` on a new pseudo-terminal (util-linux script(1)): its stdout is
 * what the terminal shows, and `keys[n]` is "typed" once the n-th prompt shows, as a person would
 * (typed earlier, the terminal itself would still echo it). Killed after 60 s.
 */
export async function runBuiltPideployOnTerminal(args: readonly string[], options: TerminalRunOptions): Promise<{ transcript: string; exitCode: number | null; ms: number }> {
  const command = shellJoin([process.execPath, BUILT_PIDEPLOY_BIN, ...args]);
  const terminal = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { env: { ...options.env, TERM: 'xterm' }, cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  let transcript = '';
  let prompts = 0;
  terminal.stdout.on('data', (chunk: Buffer) => {
    transcript += chunk.toString('utf8');
    const prompt = options.prompt;
    const shown = typeof prompt === 'string' ? transcript.split(prompt).length - 1 : (transcript.match(new RegExp(prompt.source, `${prompt.flags.replace('g', '')}g`)) ?? []).length;
    for (; prompts < shown; prompts += 1) {
      const key = options.keys[prompts];
      if (key === undefined) continue;
      if (options.typeDelayMs === undefined) terminal.stdin.write(key);
      else setTimeout(() => terminal.stdin.write(key), options.typeDelayMs);
    }
  });
  const started = Date.now();
  const exitCode = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => terminal.kill('SIGKILL'), 60_000);
    terminal.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
  terminal.stdin.end();
  return { transcript, exitCode, ms: Date.now() - started };
}
