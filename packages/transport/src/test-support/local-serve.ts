import { execFileSync, spawn } from 'node:child_process';
import { describeRequiring } from '@pideploy/lab/testing';
import type { RemoteSpawner, ServeProcess } from '../remote-serve.js';

/** Env for local nix in tests: no binary cache, no sandbox, no build users. */
export const LOCAL_NIX_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  NIX_CONFIG: 'substituters =\nsandbox = false\nbuild-users-group =\nexperimental-features = nix-command\n',
  NIX_PATH: '',
};

/**
 * A {@link RemoteSpawner} that runs the command on this machine (no SSH): the remote half of
 * the protocol is the real `nix-store --serve --write`, pointed at a chroot store with `--store`.
 */
export function localSpawner(env: NodeJS.ProcessEnv = LOCAL_NIX_ENV): RemoteSpawner & { readonly commands: string[][] } {
  const commands: string[][] = [];
  return {
    commands,
    async spawn(command: readonly string[]): Promise<ServeProcess> {
      commands.push([...command]);
      const [file, ...args] = command as [string, ...string[]];
      const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      const exit = new Promise<{ exitCode: number | null; signal: string | null }>((resolve) => {
        child.on('close', (exitCode, signal) => resolve({ exitCode, signal }));
        child.on('error', () => resolve({ exitCode: 127, signal: null }));
      });
      return { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, exit, kill: (signal = 'TERM') => child.kill(`SIG${signal}` as NodeJS.Signals) };
    },
  };
}

function missingNix(): string | undefined {
  try {
    execFileSync('nix-store', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'these tests need the local nix-store (apt install nix-bin)';
  }
}

/** `describe` for tests that run the local Nix: skipped without it, but never in CI (there it fails). */
export function describeNix(name: string, body: () => void): void {
  describeRequiring(name, missingNix(), body);
}
