import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'vitest';

/*
 * Test support: running the real Nix 2.8 CLI in differential tests. Single-user, no daemon,
 * no build users, no binary cache (no network here).
 */

/** Environment for every nix command the tests run. */
export const NIX_TEST_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  NIX_CONFIG: 'substituters =\nsandbox = false\nbuild-users-group =\nexperimental-features = nix-command\n',
};

const REQUIRED = ['nix-hash', 'nix-store', 'nix-prefetch-url', 'nix', 'tar', 'gzip'];

/** Why the differential tests cannot run here, or undefined. */
export function missingNixTool(): string | undefined {
  const searchPath = (process.env['PATH'] ?? '').split(':');
  for (const tool of REQUIRED) {
    const found = searchPath.some((directory) => {
      try {
        accessSync(path.join(directory, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) return `${tool} is not on PATH (install Debian's nix-bin, tar and gzip)`;
  }
  return undefined;
}

function inCi(): boolean {
  const ci = process.env['CI'];
  return ci !== undefined && ci !== '' && ci !== 'false';
}

/**
 * `describe` for differential tests against real nix: skipped where nix is missing on a
 * developer machine, but FAILING under CI, where a skipped comparison proves nothing.
 */
export function describeWithNix(name: string, body: () => void): void {
  const missing = missingNixTool();
  if (missing === undefined) {
    describe(name, body);
  } else if (inCi()) {
    describe(name, () => {
      it(`cannot run: ${missing}`, () => {
        throw new Error(`differential test "${name}" cannot run in CI: ${missing}`);
      });
    });
  } else {
    describe.skip(`${name} (skipped: ${missing})`, body);
  }
}

/** Result of {@link run}. */
export interface RunResult {
  readonly exitCode: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs a command (argv, no shell) and collects its output. */
export function run(command: string, args: readonly string[], options: { input?: Buffer } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: NIX_TEST_ENV, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (exitCode) => resolve({ exitCode, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }));
    child.stdin.end(options.input);
  });
}

/** Runs a command that must succeed; returns stdout as text. */
export async function runOk(command: string, args: readonly string[]): Promise<string> {
  const result = await run(command, args);
  if (result.exitCode !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.exitCode}): ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  return result.stdout.toString('utf8');
}

/** Synchronous variant for setup code (tar, gzip, mkfifo). */
export function runSync(command: string, args: readonly string[], cwd?: string): void {
  const result = spawnSync(command, args, { cwd, env: NIX_TEST_ENV, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
}
