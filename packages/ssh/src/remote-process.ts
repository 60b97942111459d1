import type { Readable, Writable } from 'node:stream';
import { PideployError, shellJoin, tailLines } from '@pideploy/core';
import type { ClientChannel } from 'ssh2';
import { SSH_ERROR_CODES, interruptedError } from './errors.js';

/**
 * A command for the remote shell: an argv array (quoted with `shellJoin`, the safe default), or a
 * command line the caller already built with `shellQuote`/`shellJoin`.
 */
export type RemoteCommand = readonly string[] | { readonly command: string };

/** Turns a {@link RemoteCommand} into the line the remote shell runs, and an argv for messages. */
export function remoteCommandLine(command: RemoteCommand): { readonly line: string; readonly argv: readonly string[] } {
  if ('command' in command && typeof command.command === 'string') return { line: command.command, argv: [command.command] };
  const argv = command as readonly string[];
  if (argv.length === 0) throw new TypeError('a remote command needs at least one word');
  return { line: shellJoin(argv), argv };
}

/** How a remote command ended. */
export interface RemoteExit {
  /** Exit status, or null when the command was killed by a signal or the channel closed early. */
  readonly exitCode: number | null;
  /** Signal name (`TERM`, `KILL` …) that ended the command, if any. */
  readonly signal: string | null;
}

/** A running remote command with its streams (for transports that speak a protocol over stdio). */
export interface RemoteProcess {
  /** The command's stdin; end it to send EOF. */
  readonly stdin: Writable;
  /** The command's stdout. */
  readonly stdout: Readable;
  /** The command's stderr. */
  readonly stderr: Readable;
  /** Settles when the channel closes. Never rejects. */
  readonly exit: Promise<RemoteExit>;
  /** Sends a signal to the remote command (default TERM) and closes the channel. */
  kill(signal?: string): void;
}

/** Options of `session.exec`. */
export interface ExecOptions {
  /** Data for the command's stdin; EOF follows it. Without it, stdin is closed at once. */
  readonly stdin?: Buffer | string | Readable | undefined;
  /** Stops the command: the remote process gets SIGTERM, the channel closes, exec rejects with PIDEPLOY_INTERRUPTED. */
  readonly signal?: AbortSignal | undefined;
  /** Receives stdout chunks as they arrive (they are still collected in the result). */
  readonly onStdout?: ((chunk: Buffer) => void) | undefined;
  /** Receives stderr chunks as they arrive (they are still collected in the result). */
  readonly onStderr?: ((chunk: Buffer) => void) | undefined;
  /** Return stdout/stderr as Buffers (binary data) instead of UTF-8 strings. */
  readonly encoding?: 'utf8' | 'buffer' | undefined;
  /** Reject with PIDEPLOY_REMOTE_COMMAND_FAILED (argv, exit code, stderr tail) on a non-zero exit. */
  readonly rejectOnFailure?: boolean | undefined;
}

/** What a finished remote command left. */
export interface ExecResult<Output extends string | Buffer = string> extends RemoteExit {
  /** Everything the command wrote to stdout. */
  readonly stdout: Output;
  /** Everything the command wrote to stderr. */
  readonly stderr: Output;
}

/** The parts of ssh2's channel internals that `sendSignal` needs. */
interface ChannelInternals {
  readonly outgoing?: { readonly id?: number; readonly state?: string };
  readonly _client?: { readonly _protocol?: { signal(id: number, name: string): void } };
}

/**
 * Sends a `signal` channel request (sshd then `killpg`s the command). ssh2's `channel.signal()`
 * silently does nothing once our side of the channel sent EOF (stdin ended, the usual case),
 * although the channel is still open, so the request goes through the protocol directly then.
 */
function sendSignal(channel: ClientChannel, signal: string): void {
  const internals = channel as unknown as ChannelInternals;
  try {
    const id = internals.outgoing?.id;
    const protocol = internals._client?._protocol;
    if ((internals.outgoing?.state === 'open' || internals.outgoing?.state === 'eof') && id !== undefined && protocol !== undefined) protocol.signal(id, signal);
    else channel.signal(signal);
  } catch {
    // the channel is already gone
  }
}

/** How long an aborted command may take to go away before exec rejects anyway. */
const ABORT_GRACE_MS = 3000;

/** Wraps an ssh2 exec channel as a {@link RemoteProcess}. */
export function remoteProcessFromChannel(channel: ClientChannel): RemoteProcess {
  let exitCode: number | null = null;
  let exitSignal: string | null = null;
  channel.on('exit', (code: number | null, signal?: string) => {
    if (typeof code === 'number') exitCode = code;
    if (typeof signal === 'string') exitSignal = signal;
  });
  const exit = new Promise<RemoteExit>((resolve) => {
    channel.on('close', () => resolve({ exitCode, signal: exitSignal }));
  });
  return {
    stdin: channel,
    stdout: channel,
    stderr: channel.stderr,
    exit,
    kill(signal = 'TERM') {
      sendSignal(channel, signal);
      // Give the remote a moment to deliver the signal before the channel closes.
      setTimeout(() => {
        try {
          channel.close();
        } catch {
          // already closed
        }
      }, 50).unref();
    },
  };
}

/**
 * Drives a remote process to completion: feeds `prefix` (internal: the sudo password line) and
 * then the caller's stdin, collects output, honours the abort signal.
 */
export async function collectRemoteProcess(
  process: RemoteProcess,
  argv: readonly string[],
  options: ExecOptions & { readonly stdinPrefix?: Buffer | undefined; readonly redact?: ((text: string) => string) | undefined },
): Promise<ExecResult<string | Buffer>> {
  const stdoutChunks: Buffer[] = [];
  const stderrChunks: Buffer[] = [];
  process.stdout.on('data', (chunk: Buffer) => {
    stdoutChunks.push(chunk);
    options.onStdout?.(chunk);
  });
  process.stderr.on('data', (chunk: Buffer) => {
    stderrChunks.push(chunk);
    options.onStderr?.(chunk);
  });
  process.stdin.on('error', () => {
    // EPIPE-like errors when the command exits before reading all stdin: the exit status tells.
  });
  if (options.stdinPrefix !== undefined) process.stdin.write(options.stdinPrefix);
  const stdin = options.stdin;
  if (stdin === undefined) process.stdin.end();
  else if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) process.stdin.end(stdin);
  else stdin.pipe(process.stdin);

  let aborted = false;
  let giveUp: (() => void) | undefined;
  const onAbort = () => {
    aborted = true;
    process.kill('TERM');
    // A server that ignores the signal (or a dead link) must not keep the caller waiting.
    setTimeout(() => giveUp?.(), ABORT_GRACE_MS).unref();
  };
  const gaveUp = new Promise<RemoteExit>((resolve) => {
    giveUp = () => resolve({ exitCode: null, signal: null });
  });
  if (options.signal?.aborted === true) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  const exit = await Promise.race([process.exit, gaveUp]);
  options.signal?.removeEventListener('abort', onAbort);
  if (typeof stdin === 'object' && !Buffer.isBuffer(stdin)) stdin.unpipe(process.stdin);
  if (aborted) throw interruptedError(`the remote command "${argv.join(' ')}"`, options.signal?.reason);
  const stdout = Buffer.concat(stdoutChunks);
  const stderr = Buffer.concat(stderrChunks);
  if (options.rejectOnFailure === true && exit.exitCode !== 0) {
    const redact = options.redact ?? ((text: string) => text);
    const stderrTail = redact(tailLines(stderr.toString('utf8')));
    throw new PideployError({
      code: SSH_ERROR_CODES.remoteCommandFailed,
      message: `remote command failed (${exit.exitCode === null ? `signal ${exit.signal ?? 'unknown'}` : `exit code ${exit.exitCode}`}): ${redact(argv.join(' '))}${stderrTail === '' ? '' : `: ${stderrTail.split('\n').at(-1)}`}`,
      hint: 'see the command and its stderr above',
      commandFailure: { command: argv.map(redact), exitCode: exit.exitCode ?? undefined, signal: exit.signal ?? undefined, stderrTail },
    });
  }
  if (options.encoding === 'buffer') return { ...exit, stdout, stderr };
  return { ...exit, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') };
}
