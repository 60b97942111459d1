/**
 * Helpers for the CLI's lab tests: they run the BUILT `pideploy` (`dist/bin.js`, so `pnpm build`
 * first), as a user would, in a child process.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The built `pideploy` entry point. */
export const BUILT_PIDEPLOY_BIN = fileURLToPath(new URL('../../dist/bin.js', import.meta.url));

/** What a finished `pideploy` run printed, and its exit code. */
export interface PideployRun {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/** Runs `pideploy ARGS` (the built binary, this Node) and returns its output and exit code; never throws for a non-zero exit. */
export async function runBuiltPideploy(args: readonly string[], options: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {}): Promise<PideployRun> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [BUILT_PIDEPLOY_BIN, ...args], { env: options.env, cwd: options.cwd, maxBuffer: 16 << 20 });
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failure = error as { stdout: string; stderr: string; code: number };
    return { stdout: failure.stdout, stderr: failure.stderr, code: failure.code };
  }
}
