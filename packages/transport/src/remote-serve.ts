import type { Readable, Writable } from 'node:stream';
import { PideployError, tailLines } from '@pideploy/core';
import { SSH_ERROR_CODES, SUDO_WRONG_PASSWORD } from '@pideploy/ssh';

/**
 * A running remote command with byte streams: what `SshSession.spawn` of `@pideploy/ssh`
 * returns (structurally), and what tests get from a local `nix-store --serve`.
 */
export interface ServeProcess {
  /** The command's stdin; ending it sends EOF. */
  readonly stdin: Writable;
  /** The command's stdout (protocol bytes only). */
  readonly stdout: Readable;
  /** The command's stderr (Nix and sudo messages). */
  readonly stderr: Readable;
  /** Settles when the command ends or the connection drops (exit code null). Never rejects. */
  readonly exit: Promise<{ readonly exitCode: number | null; readonly signal: string | null }>;
  /** Stops the command and closes its channel. */
  kill(signal?: string): void;
}

/** Starts remote commands over one connection (an `SshSession` of `@pideploy/ssh` is one). */
export interface RemoteSpawner {
  /** Runs argv on the remote (quoted for its shell) and returns its streams. */
  spawn(command: readonly string[], options?: { readonly signal?: AbortSignal | undefined }): Promise<ServeProcess>;
}

/**
 * How a remote store command gets write access to the store:
 * - `direct`: the login user is root, or a Nix `trusted-users` member (paths need no signature);
 * - `sudo`: run it as root through `runner`, the `SudoRunner` of `@pideploy/ssh` for the same
 *   session (`session.sudo()`): the login user need not be trusted and nothing needs a signature.
 *   The runner owns the sudo prefix and feeds the password on stdin; it never reaches this package.
 */
export type StoreAccess = { readonly mode: 'direct' } | { readonly mode: 'sudo'; readonly runner: RemoteSpawner };

/** How store commands reach root through a session's sudo runner (`session.sudo()`): directly when the login user is root. */
export function storeAccessFor(runner: RemoteSpawner & { readonly mode: string }): StoreAccess {
  return runner.mode === 'root' ? { mode: 'direct' } : { mode: 'sudo', runner };
}

/** The spawner a store command runs with: the session itself, or the sudo runner. */
export function storeSpawner(session: RemoteSpawner, access: StoreAccess): RemoteSpawner {
  return access.mode === 'sudo' ? access.runner : session;
}

/** Where the remote Nix commands come from; both are for tests (a local chroot store). */
export interface RemoteNixOptions {
  /** The remote program (default `nix-store`, found through the remote PATH). */
  readonly remoteProgram?: string | undefined;
  /** `--store` for the remote nix-store (tests: a chroot store); default the system store. */
  readonly remoteStore?: string | undefined;
}

/**
 * The remote argv of the serve process (the spawner of {@link storeSpawner} adds sudo); `write:
 * false` gives a read-only server (queries only, which the login user may run without sudo).
 */
export function serveCommand(options: RemoteNixOptions = {}, write = true): readonly string[] {
  return [options.remoteProgram ?? 'nix-store', '--serve', ...(write ? ['--write'] : []), ...(options.remoteStore === undefined ? [] : ['--store', options.remoteStore])];
}

/** What was going on when the serve process failed. */
export type ServeFailurePhase = 'connect' | 'query' | 'send' | 'finish';

/** Input of {@link classifyServeFailure}. */
export interface ServeFailure {
  /** Host name for the message. */
  readonly host: string;
  readonly phase: ServeFailurePhase;
  /** The remote's stderr (tail). */
  readonly stderr: string;
  /** Exit code, null when the connection dropped or a signal ended it. */
  readonly exitCode: number | null;
  /** The path being sent (phase `send`). */
  readonly path?: string | undefined;
  /** Paths completely copied before the failure. */
  readonly pathsCopied?: number | undefined;
  /** Paths the copy had to send. */
  readonly pathsToSend?: number | undefined;
  /** The remote command, for the error's record (default {@link serveCommand}'s). */
  readonly command?: readonly string[] | undefined;
}

/**
 * A remote shell saying nix-store (or sudo) is not there: bash's `nix-store: command not found`,
 * dash's and busybox's `nix-store: not found`, or a missing file.
 */
export const REMOTE_NIX_MISSING = /(?:nix-store|sudo)(?:: command)?:? not found|No such file or directory.*nix-store/u;

const RERUN_HINT = 'nothing half-copied is registered on the target; run the same command again and it sends only what is still missing';

/**
 * Sudo's refusals in a remote command's stderr (wrong password, password needed, user not
 * allowed) as code, message and hint; undefined when sudo did not refuse. Pure.
 * @param outcome what to say was (not) done, e.g. `nothing was copied`.
 */
export function classifySudoFailure(host: string, stderr: string, outcome: string): { readonly code: string; readonly message: string; readonly hint: string } | undefined {
  if (SUDO_WRONG_PASSWORD.test(stderr)) {
    return { code: SSH_ERROR_CODES.sudoPasswordWrong, message: `sudo on ${host} rejected the password; ${outcome}`, hint: 'check the sudo password of the login user on the target (--sudo-password-file / --sudo-password-stdin)' };
  }
  if (/a password is required|a terminal is required/u.test(stderr)) {
    return { code: SSH_ERROR_CODES.sudoPasswordRequired, message: `sudo on ${host} needs a password; ${outcome}`, hint: 'give it with --sudo-password-file FILE or --sudo-password-stdin' };
  }
  if (/not in the sudoers|is not allowed to (?:execute|run sudo)|may not run sudo/u.test(stderr)) {
    return {
      code: SSH_ERROR_CODES.sudoNotAllowed,
      message: `the login user may not use sudo on ${host}; ${outcome}`,
      hint: 'log in as root, or allow the user sudo (NixOS: users.users.<name>.extraGroups = [ "wheel" ])',
    };
  }
  return undefined;
}

/** A maker of PideployErrors that keep a remote command's argv (never secrets), exit and stderr tail. */
export function remoteFailureMaker(
  command: readonly string[],
  exitCode: number | null,
  stderr: string,
): (code: string, message: string, hint: string, isRetryable?: boolean) => PideployError {
  return (code, message, hint, isRetryable = false) =>
    new PideployError({ code, message, hint, isRetryable, commandFailure: { command, exitCode: exitCode ?? undefined, stderrTail: tailLines(stderr) } });
}

/** The last meaningful stderr line, without sudo's/nix's `error:` prefix noise. */
export function lastLine(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '');
  return lines.at(-1) ?? '';
}

/**
 * Turns the remote's stderr and exit into one PideployError with a hint: wrong sudo password,
 * unsigned paths for an untrusted user, target store full, nix missing, connection cut. Pure.
 */
export function classifyServeFailure(failure: ServeFailure): PideployError {
  const { host, stderr } = failure;
  const progress =
    failure.pathsToSend !== undefined ? ` (${failure.pathsCopied ?? 0} of ${failure.pathsToSend} paths copied)` : '';
  const make = remoteFailureMaker(failure.command ?? serveCommand(), failure.exitCode, stderr);
  const sudo = classifySudoFailure(host, stderr, 'nothing was copied');
  if (sudo !== undefined) return make(sudo.code, sudo.message, sudo.hint);
  if (/lacks a valid signature/u.test(stderr)) {
    return make(
      'PIDEPLOY_COPY_UNTRUSTED_USER',
      `${host} refused unsigned paths: the login user is not a trusted Nix user there${progress}`,
      'give the sudo password (--sudo-password-file / --sudo-password-stdin) so pideploy imports as root, or add the user to nix.settings.trusted-users',
    );
  }
  if (/No space left on device|disk quota exceeded/iu.test(stderr)) {
    return make('PIDEPLOY_TARGET_STORE_FULL', `the Nix store on ${host} ran out of space${failure.path === undefined ? '' : ` while receiving ${failure.path}`}${progress}`, `free space on the target (sudo nix-collect-garbage -d) or grow its /nix; ${RERUN_HINT}`);
  }
  if (/hash mismatch importing path/u.test(stderr)) {
    return make('PIDEPLOY_COPY_HASH_MISMATCH', `${host} rejected ${failure.path ?? 'a path'}: its contents do not match the local store's NAR hash`, 'the local store is damaged: run nix-store --verify --check-contents --repair here');
  }
  if (REMOTE_NIX_MISSING.test(stderr)) {
    return make('PIDEPLOY_REMOTE_NIX_MISSING', `nix-store is not on the PATH of non-interactive SSH sessions on ${host}`, 'install Nix on the target (it runs NixOS?), or make nix-store reachable through PATH');
  }
  if (/cannot connect to socket|daemon-socket/u.test(stderr)) {
    return make('PIDEPLOY_REMOTE_NIX_DAEMON', `cannot reach the nix-daemon on ${host}: ${lastLine(stderr)}`, 'start the nix-daemon on the target, or copy as root (through sudo)', true);
  }
  if (failure.exitCode === null) {
    return make(
      'PIDEPLOY_COPY_CONNECTION_LOST',
      `the SSH connection to ${host} was cut ${failure.phase === 'send' && failure.path !== undefined ? `while sending ${failure.path}` : `during the copy (${failure.phase})`}${progress}`,
      RERUN_HINT,
      true,
    );
  }
  const detail = lastLine(stderr);
  return make(
    'PIDEPLOY_COPY_FAILED',
    `nix-store --serve on ${host} failed (exit ${failure.exitCode}) during ${failure.phase}${progress}${detail === '' ? '' : `: ${detail}`}`,
    failure.phase === 'connect' ? 'check that Nix is installed on the target and that the login user can use it' : RERUN_HINT,
  );
}
