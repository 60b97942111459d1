import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { PideployError, tailLines } from '@pideploy/core';
import { SSH_ERROR_CODES } from './errors.js';
import type { ExecOptions, ExecResult, RemoteCommand, RemoteProcess } from './remote-process.js';
import { EXEC_WITH_SECRET, SPAWN_WITH_SECRET, type SessionWithSecretExec, type SshSession } from './session.js';

/** How the login user becomes root on the host. */
export type SudoMode = 'root' | 'nopasswd' | 'password';

/** What a sudo password provider is asked. */
export interface SudoPasswordRequest {
  /** The host alias, for the prompt. */
  readonly host: string;
  /** The login user whose password sudo wants. */
  readonly user: string;
  /** 1 for the first question; 2 and 3 after "incorrect password". */
  readonly attempt: number;
}

/** Asks for the sudo password (no echo). Return undefined to give up. The answer is never logged. */
export type SudoPasswordProvider = (request: SudoPasswordRequest) => Promise<string | undefined>;

/**
 * One provider shared by many connections: for each realm (e.g. the login user) the first
 * question is asked, later ones get that answer (even while it is still being typed), and a
 * question after a refused password (attempt > 1) is asked again. `undefined` answers nothing.
 */
export function sharePasswordPerRealm(provider: SudoPasswordProvider | undefined): (realm: string) => SudoPasswordProvider {
  const answers = new Map<string, Promise<string | undefined>>();
  return (realm) => async (question) => {
    if (question.attempt > 1 || !answers.has(realm)) answers.set(realm, provider === undefined ? Promise.resolve(undefined) : provider(question));
    return answers.get(realm);
  };
}

/** Options of {@link createSudo}. */
export interface CreateSudoOptions {
  /** Asked once when sudo needs a password (again only after a wrong one, up to `maxAttempts`). */
  readonly passwordProvider?: SudoPasswordProvider | undefined;
  /**
   * A password known in advance (`--sudo-password-file`, `--sudo-password-stdin`): used instead of
   * the provider, and a wrong one fails at once (retrying the same text cannot help).
   */
  readonly password?: string | undefined;
  /** How many passwords to try before PIDEPLOY_SUDO_PASSWORD_WRONG (default 3, like sudo). */
  readonly maxAttempts?: number | undefined;
  /** Cancels the detection and validation commands. */
  readonly signal?: AbortSignal | undefined;
  /**
   * How this user became root on an earlier connection to the same host: skips the detection
   * and the separate password check (for `password`, the password or provider is still needed).
   * The first command run through sudo then proves sudo works: with a wrong password it fails.
   */
  readonly assumeMode?: SudoMode | undefined;
  /**
   * The first root command the caller needs anyway, run with the runner as soon as it is known
   * (every mode). For a password host it replaces the separate check (`sudo -k -S -v`): each
   * password tried is proven by this command instead, so the host hashes the password once less
   * per connection. Throwing a PideployError with code `PIDEPLOY_SUDO_PASSWORD_WRONG` means the
   * password was refused (the next one is asked, up to `maxAttempts`); any other error ends
   * `createSudo` with that error. Whatever it started is the caller's to keep (or stop) from here.
   */
  readonly proveWith?: ((runner: SudoRunner) => Promise<void>) | undefined;
}

/** Runs commands as root on one session, feeding the validated password from memory each time. */
export interface SudoRunner {
  /** How root is reached on this host. */
  readonly mode: SudoMode;
  /** The argv prefix used before each command (no secrets in it), e.g. `sudo -k -S -p '' --`. */
  readonly prefix: readonly string[];
  /** Runs `argv` as root; `options.stdin` reaches the command exactly (the password line is consumed by sudo). */
  exec(argv: readonly string[], options: ExecOptions & { readonly encoding: 'buffer' }): Promise<ExecResult<Buffer>>;
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult<string>>;
  /**
   * Starts `argv` as root and hands back its streams; the password line (if any) is already
   * written, so everything written to `stdin` reaches the command.
   */
  spawn(argv: readonly string[], options?: { readonly signal?: AbortSignal | undefined }): Promise<RemoteProcess>;
}

/**
 * The sudo invocation for a password host. `-S` reads the password from stdin, `-p ''` prints no
 * prompt, and `-k` makes sudo ignore (and not write) the credential cache, so it ALWAYS reads
 * exactly one password line. Without `-k`, a timestamp still valid from an earlier sudo on the same
 * connection (Debian keys it on the parent pid, the same sshd process for every channel) makes
 * sudo skip reading, and the password line would become the command's input.
 */
export const SUDO_PASSWORD_PREFIX: readonly string[] = ['sudo', '-k', '-S', '-p', '', '--'];
/** The sudo invocation for NOPASSWD hosts: `-n` fails instead of waiting for a password. */
export const SUDO_NOPASSWD_PREFIX: readonly string[] = ['sudo', '-n', '--'];

const NO_PASSWORD_NEEDED: readonly string[] = ['sudo', '-n', '-k', 'true'];
const VALIDATE: readonly string[] = ['sudo', '-k', '-S', '-p', '', '-v'];

/** What sudo (`sudo -S`) says when the password is wrong, in any stage's remote stderr. */
export const SUDO_WRONG_PASSWORD = /incorrect password|Sorry, try again|no password was provided|Authentication failure/iu;

function isWrongPassword(stderr: string): boolean {
  return SUDO_WRONG_PASSWORD.test(stderr);
}

function notAllowedError(display: string, user: string, stderr: string): PideployError {
  return new PideployError({
    code: SSH_ERROR_CODES.sudoNotAllowed,
    message: `${user} on ${display} cannot use sudo: ${tailLines(stderr, 1) || 'sudo failed'}`,
    hint: `allow it in /etc/sudoers.d on the host (e.g. "${user} ALL=(ALL:ALL) ALL"), or connect as root`,
    commandFailure: { command: [...VALIDATE], stderrTail: tailLines(stderr) },
  });
}

/**
 * Finds out how the session's user becomes root and, for a password host, gets the password once
 * and checks it at once (`sudo -k -S -p '' -v`, or the caller's `proveWith` command; the password
 * on that channel's stdin only). The
 * password then lives only in this object's memory: never in argv, env, events or errors.
 */
export async function createSudo(session: SshSession, options: CreateSudoOptions = {}): Promise<SudoRunner> {
  const internal = session as SessionWithSecretExec;
  const signal = options.signal;
  const proven = async (runner: SudoRunner): Promise<SudoRunner> => {
    await options.proveWith?.(runner);
    return runner;
  };
  if (options.assumeMode === 'root') return proven(makeRunner(internal, 'root', [], undefined));
  if (options.assumeMode === 'nopasswd') return proven(makeRunner(internal, 'nopasswd', SUDO_NOPASSWD_PREFIX, undefined));
  if (options.assumeMode === 'password') {
    const password = options.password ?? (await options.passwordProvider?.({ host: session.host.alias, user: session.host.user, attempt: 1 }));
    if (password !== undefined && !/[\r\n\0]/u.test(password)) {
      return proven(makeRunner(internal, 'password', SUDO_PASSWORD_PREFIX, Buffer.from(`${password}\n`, 'utf8'), redactor(password)));
    }
  }
  // Who the login user is and whether sudo needs a password, in one round trip.
  const probeArgv = ['sh', '-c', 'id -u && exec "$@"', 'sudo-probe', ...NO_PASSWORD_NEEDED];
  const probe = await session.exec(probeArgv, { signal });
  const uid = probe.stdout.split('\n')[0]?.trim() ?? '';
  if (!/^\d+$/u.test(uid)) {
    throw new PideployError({
      code: SSH_ERROR_CODES.remoteCommandFailed,
      message: `cannot tell which user logs in to ${session.display}: \`id -u\` printed ${JSON.stringify(uid)}${probe.stderr.trim() === '' ? '' : ` (${tailLines(probe.stderr, 1)})`}`,
      hint: 'check that the login shell of the user runs commands (ssh HOST id -u)',
      commandFailure: { command: probeArgv, ...(probe.exitCode === null ? {} : { exitCode: probe.exitCode }), stderrTail: tailLines(probe.stderr) },
    });
  }
  if (uid === '0') return proven(makeRunner(internal, 'root', [], undefined));
  if (probe.exitCode === 0) return proven(makeRunner(internal, 'nopasswd', SUDO_NOPASSWD_PREFIX, undefined));
  if (probe.exitCode === 127 || /command not found|not found/iu.test(probe.stderr)) {
    throw new PideployError({
      code: SSH_ERROR_CODES.sudoNotAllowed,
      message: `sudo is not installed on ${session.display} (or not on the PATH of non-interactive SSH)`,
      hint: 'install sudo on the host (security.sudo.enable on NixOS), or connect as root',
    });
  }
  if (!/password is required/iu.test(probe.stderr)) throw notAllowedError(session.display, session.host.user, probe.stderr);

  const maxAttempts = options.password !== undefined ? 1 : Math.max(1, options.maxAttempts ?? 3);
  for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
    const password = options.password ?? (await options.passwordProvider?.({ host: session.host.alias, user: session.host.user, attempt }));
    // A provider with no further answer after a refused one: the password was wrong, not missing.
    if (password === undefined && attempt > 1) throw wrongPasswordError(session, attempt - 1, 'check the password of the login user on that host');
    if (password === undefined) {
      throw new PideployError({
        code: SSH_ERROR_CODES.sudoPasswordRequired,
        message: `sudo on ${session.display} needs ${session.host.user}'s password, and none was given`,
        hint: 'run interactively, or pass --sudo-password-file FILE / --sudo-password-stdin',
      });
    }
    if (/[\r\n\0]/u.test(password)) {
      throw new PideployError({
        code: SSH_ERROR_CODES.sudoPasswordWrong,
        message: 'the sudo password contains a line break or NUL byte, which sudo -S cannot read',
        hint: 'a password file holds the password on its first line',
      });
    }
    const secretLine = Buffer.from(`${password}\n`, 'utf8');
    const redact = redactor(password);
    const runner = makeRunner(internal, 'password', SUDO_PASSWORD_PREFIX, secretLine, redact);
    if (options.proveWith !== undefined) {
      try {
        await options.proveWith(runner);
        return runner;
      } catch (error) {
        if (PideployError.isInstance(error) && error.code === SSH_ERROR_CODES.sudoPasswordWrong) continue;
        throw error;
      }
    }
    const check = (await internal[EXEC_WITH_SECRET]([...VALIDATE], secretLine, { signal, redact })) as ExecResult<string>;
    if (check.exitCode === 0) return runner;
    const stderr = redact(check.stderr);
    if (!isWrongPassword(stderr)) throw notAllowedError(session.display, session.host.user, stderr);
  }
  throw wrongPasswordError(session, maxAttempts, options.password !== undefined ? 'check the password file / stdin: it must hold the login user’s password on its first line' : 'check the password of the login user on that host');
}

function wrongPasswordError(session: SshSession, refused: number, hint: string): PideployError {
  return new PideployError({
    code: SSH_ERROR_CODES.sudoPasswordWrong,
    message: `sudo on ${session.display} rejected ${refused === 1 ? 'the password' : `${refused} passwords`} for ${session.host.user}`,
    hint,
  });
}

/** Replaces the secret in any text that might leave the process. */
function redactor(secret: string): (text: string) => string {
  return (text) => (secret === '' ? text : text.split(secret).join('********'));
}

function makeRunner(
  session: SessionWithSecretExec,
  mode: SudoMode,
  prefix: readonly string[],
  secretLine: Buffer | undefined,
  redact?: (text: string) => string,
): SudoRunner {
  return {
    mode,
    prefix,
    exec: ((argv: readonly string[], options: ExecOptions = {}) => {
      if (argv.length === 0) throw new TypeError('sudo needs a command');
      const command: RemoteCommand = [...prefix, ...argv];
      return session[EXEC_WITH_SECRET](command, secretLine, { ...options, redact });
    }) as SudoRunner['exec'],
    spawn: (argv, options = {}) => {
      if (argv.length === 0) throw new TypeError('sudo needs a command');
      return session[SPAWN_WITH_SECRET]([...prefix, ...argv], secretLine, options);
    },
  };
}

/** Reads a sudo password from the first line of a file (`--sudo-password-file`); the newline is dropped. */
export async function readSudoPasswordFromFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `cannot read the sudo password file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      hint: 'check the path and its permissions (it should be readable by you only)',
      cause: error,
    });
  }
  return firstLine(text);
}

/** Reads a sudo password from a stream's first line (`--sudo-password-stdin`); the rest is ignored. */
export async function readSudoPasswordFromStdin(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    if (chunks.some((part) => part.includes(0x0a))) break;
  }
  return firstLine(Buffer.concat(chunks).toString('utf8'));
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  const password = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (password === '') {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'the sudo password is empty', hint: 'put the password on the first line' });
  }
  return password;
}
