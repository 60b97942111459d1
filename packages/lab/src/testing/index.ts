import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'vitest';
import type { LabStatus } from '../lab.js';
import { runCommand, runCommandAllowingFailure } from '../run.js';

/**
 * Test helpers for lab tests (`*.lab.test.ts`) of every pideploy package
 * (`import { describeLab } from '@pideploy/lab/testing'`).
 */

const REQUIRED_TOOLS = ['nix-build', 'nix-store', 'sshd', 'ssh', 'sudo', 'ip', 'unshare', 'nsenter', 'qemu-aarch64-static'];

/** Why lab tests cannot run here, or undefined when everything they need is present. */
export function missingLabPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'lab tests need root (namespaces, sshd, sudo, binfmt_misc)';
  const searchPath = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/sbin']);
  for (const tool of REQUIRED_TOOLS) {
    const found = searchPath.some((directory) => {
      try {
        accessSync(path.join(directory, tool), constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
    if (!found) return `lab tests need ${tool} (run .ci/run or ./dev setup to install the lab's packages)`;
  }
  return undefined;
}

/**
 * `describe` for tests that need something this machine may lack (`missing` says what, or is
 * undefined when all is there): skipped on a developer machine, but a FAILURE under CI
 * (`CI=true`), because a test skipped in CI proves nothing.
 */
export function describeRequiring(name: string, missing: string | undefined, body: () => void): void {
  if (missing === undefined) {
    describe(name, body);
    return;
  }
  if (process.env['CI'] !== undefined && process.env['CI'] !== '' && process.env['CI'] !== 'false') {
    describe(name, () => {
      it(`cannot run: ${missing}`, () => {
        throw new Error(`test "${name}" cannot run in CI: ${missing}`);
      });
    });
    return;
  }
  describe.skip(`${name} (skipped: ${missing})`, body);
}

/** `describe` for lab tests ({@link describeRequiring} the lab's prerequisites). */
export function describeLab(name: string, body: () => void): void {
  describeRequiring(name, missingLabPrerequisite(), body);
}


/** Options of {@link buildLabSystem}. */
export interface BuildLabSystemOptions {
  /** Makes the system distinct (it becomes its `/etc/motd`); also the name of its configuration file. */
  readonly label: string;
  /** More NixOS options, as the text of attribute definitions, e.g. `lab.breakSsh = true;`. */
  readonly extraConfig?: string | undefined;
  /** Directory for the generated configuration file. */
  readonly workDir: string;
  /** `system` to build for (default x86_64-linux: fast, the lab hosts run the build machine's binaries). */
  readonly system?: string | undefined;
}

/**
 * Builds a NixOS system (`config.system.build.toplevel`) from the lab's mini-nixpkgs, fetched
 * from the lab's archive server as a pinned tarball, exactly as pideploy's expressions import
 * nixpkgs; returns its store path (on this machine: copy it to a host with `nix-copy-closure`).
 */
export async function buildLabSystem(lab: LabStatus, options: BuildLabSystemOptions): Promise<string> {
  // Labels and systems are plain words, so they go into Nix strings as they are.
  if (!/^[A-Za-z0-9_-]+$/u.test(options.label)) throw new TypeError(`a lab system label is a plain word, not ${JSON.stringify(options.label)}`);
  const revision = lab.nixpkgs?.revisions[0];
  if (revision === undefined) throw new Error('the lab publishes no mini-nixpkgs (is it up?)');
  const env = { ...lab.env };
  const sha256 = (await runCommand(['nix-prefetch-url', '--unpack', '--name', 'source', revision.url], { env })).stdout.trim();
  const file = path.join(options.workDir, `${options.label}.nix`);
  await writeFile(
    file,
    `{ ... }: { networking.hostName = "pi"; boot.loader.grub.enable = false; boot.loader.generic-extlinux-compatible.enable = true;
  environment.etc."motd".text = "${options.label}\\n"; system.stateVersion = "24.05"; ${options.extraConfig ?? ''} }\n`,
  );
  const expression = `let nixpkgs = builtins.fetchTarball { url = "${revision.url}"; sha256 = "${sha256}"; };
    in (import "\${nixpkgs}/nixos" { configuration = ${file}; system = "${options.system ?? 'x86_64-linux'}"; }).config.system.build.toplevel`;
  return (await runCommand(['nix-build', '--no-out-link', '-E', expression], { env, cwd: options.workDir })).stdout.trim();
}

/** The lines of a log file; none before it exists. */
function logLines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
}

/** Marks the end of a log file now and returns a reader of the lines written after it. */
function linesFrom(file: string): () => string[] {
  const before = logLines(file).length;
  return () => logLines(file).slice(before);
}

/**
 * Whether a process whose command line contains `pattern` runs on this machine (`pgrep -f`): a lab
 * build's builder (e.g. `busybox sleep 41`), to see that an interrupted deployment stopped it.
 */
export async function isProcessRunning(pattern: string): Promise<boolean> {
  return (await runCommandAllowingFailure(['pgrep', '-f', pattern])).exitCode === 0;
}

/** How many SSH logins a lab host has accepted so far (`Accepted publickey` in its sshd log, `sshdLog` of its status). */
export function sshLoginCount(host: { readonly sshdLog: string }): number {
  return logLines(host.sshdLog).filter((line) => line.includes('Accepted publickey')).length;
}

/**
 * Marks the end of a lab host's sudo log now and returns a reader of the lines written after it:
 * `const sudoRan = sudoLogFrom(host); …; expect(sudoRan())…`. Each line is one command run through
 * sudo (`… ; COMMAND=…`) or a refusal (`a password is required`); a successful `sudo -v` runs no
 * command and is not in it (see {@link sudoPasswordChecksFrom}).
 */
export function sudoLogFrom(host: { readonly sudoLog: string }): () => string[] {
  return linesFrom(host.sudoLog);
}

/**
 * Like {@link sudoLogFrom} for the host's password checks (`sudoPasswordChecks` of its status): one
 * line per password sudo had PAM check, right or wrong, `sudo -v` included: `deploy sudo -k -S -p  -v`.
 */
export function sudoPasswordChecksFrom(host: { readonly sudoPasswordChecks: string }): () => string[] {
  const read = linesFrom(host.sudoPasswordChecks);
  return () => read().map((line) => line.trimEnd());
}

/** The commands of sudo log lines (what follows `COMMAND=`), without the refusals of `sudo -n` probes ("a password is required"). */
export function sudoCommandsOf(lines: readonly string[]): string[] {
  return lines.filter((line) => line.includes('COMMAND=') && !line.includes('a password is required')).map((line) => line.slice(line.indexOf('COMMAND=') + 'COMMAND='.length));
}
