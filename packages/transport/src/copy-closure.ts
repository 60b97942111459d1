import { once } from 'node:events';
import { PideployError, type PideployContext } from '@pideploy/core';
import { dumpPathToNar, formatHash, parseHash, queryClosurePathInfos, type StorePathInfo } from '@pideploy/nix';
import { SSH_ERROR_CODES, SUDO_WRONG_PASSWORD } from '@pideploy/ssh';
import { planCopy, type CopyPlan } from './closure-plan.js';
import { TransferMeter } from './progress.js';
import {
  classifyServeFailure,
  lastLine,
  serveCommand,
  storeSpawner,
  type RemoteNixOptions,
  type RemoteSpawner,
  type ServeFailurePhase,
  type ServeProcess,
  type StoreAccess,
} from './remote-serve.js';
import {
  encodeAddToStoreNarHeader,
  encodeClientHello,
  encodeQueryClosure,
  encodeQueryPathInfos,
  encodeQueryValidPaths,
  readPathInfos,
  ServeReader,
  ServeStreamEnded,
  serveProtocolError,
  type ServePathInfo,
} from './serve-protocol.js';

/** Input of {@link copyClosure}. */
export interface CopyClosureInput extends RemoteNixOptions {
  /** Name of the target in events and messages (e.g. the pideploy.json host name). */
  readonly host: string;
  /** The one connection to the target (an `SshSession`); the copy opens one channel on it. */
  readonly session: RemoteSpawner;
  /** Store paths (or symlinks to them) whose closures to copy. */
  readonly paths: readonly string[];
  /**
   * Path infos of the whole closure, when the caller already has them; default: asked from the
   * local store (`nix path-info --json --recursive`).
   */
  readonly closure?: readonly StorePathInfo[] | undefined;
  /** How the remote nix-store gets write access (default `direct`: root or a trusted user). */
  readonly access?: StoreAccess | undefined;
  /**
   * A connection from {@link openServeConnection} to use instead of starting one (then `session`
   * and `access` are not used). The copy closes it when it ends, however it ends.
   */
  readonly connection?: ServeConnection | undefined;
  /** How long a new serve process may take to answer its hello ({@link DEFAULT_HELLO_TIMEOUT_MS}). */
  readonly helloTimeoutMs?: number | undefined;
  /** Let the target substitute missing paths from its own binary caches first. */
  readonly substituteOnDestination?: boolean | undefined;
  /** Environment for the local nix query (default this process's). */
  readonly localNixEnv?: NodeJS.ProcessEnv | undefined;
}

/** What {@link copyClosure} did. */
export interface CopyClosureResult {
  readonly version: 1;
  readonly host: string;
  /** Paths sent, dependencies first. */
  readonly pathsSent: readonly string[];
  /** Closure paths the target already had. */
  readonly pathsPresent: readonly string[];
  /** NAR bytes sent (Σ narSize of the sent paths). */
  readonly bytesSent: number;
  readonly durationMs: number;
}

const STDERR_KEEP = 16 * 1024;

/**
 * Copies the closure of `paths` to the target over one channel of an existing SSH session, by
 * speaking `nix-store --serve --write` (docs/decisions/0002-transport-protocol.md): one round trip
 * asks which paths the target has; the missing ones follow as `cmdAddToStoreNar`, dependencies
 * first, NARs streamed from the local store, pipelined. Emits `copy-plan`, `copy-progress` and
 * `copy-end`. Nix registers a path only after its whole NAR arrived, so an interruption at any
 * point leaves the target consistent and a re-run sends only what is still missing.
 * @throws PideployError with a one-line message and hint: `PIDEPLOY_SUDO_PASSWORD_WRONG` (before
 *   anything is sent), `PIDEPLOY_COPY_UNTRUSTED_USER`, `PIDEPLOY_TARGET_STORE_FULL`,
 *   `PIDEPLOY_COPY_CONNECTION_LOST`, `PIDEPLOY_STORE_PATH_NOT_VALID`, `PIDEPLOY_INTERRUPTED` …
 */
export async function copyClosure(input: CopyClosureInput, context: PideployContext): Promise<CopyClosureResult> {
  const startedAt = performance.now();
  let closure: readonly StorePathInfo[];
  try {
    closure = input.closure ?? (await queryClosurePathInfos(input.paths, { env: input.localNixEnv, signal: context.signal }));
    throwIfAborted(context.signal, input.host);
  } catch (error) {
    input.connection?.close();
    throw error;
  }
  // A connection opened earlier (openServeConnection, e.g. while proving the sudo password) is
  // greeted already; a new one sends its hello together with the query: one round trip either way.
  const connection = input.connection ?? (await startServeConnection(input, context.signal));
  const state = stateOf(connection);
  const { remote, reader, watch } = state;
  try {
    // Queries asked on a given connection before (the running system's closure) are answered
    // first; the guard ends the wait when the process fails meanwhile (an exit, a drop).
    if (input.connection !== undefined) await watch.guard(state.idle().catch(() => undefined));
    const paths = closure.map((info) => info.path);
    remote.stdin.write(encodeQueryValidPaths({ lock: true, substitute: input.substituteOnDestination === true, paths }));
    await watch.guard(state.greeted);
    watch.phase = 'query';
    const valid = await watch.guard(reader.readStrings('the valid paths'));
    const plan = planCopy(closure, valid);
    context.reporter.emit({
      type: 'copy-plan',
      host: input.host,
      pathsToSend: plan.toSend.length,
      bytesToSend: plan.bytesToSend,
      pathsPresent: plan.present.length,
    });
    watch.phase = 'send';
    watch.pathsToSend = plan.toSend.length;
    await watch.guard(sendPaths(plan, remote, reader, watch, input.host, context));
    await finishServe(state, input.host, 'the copy');
    const durationMs = Math.round(performance.now() - startedAt);
    context.reporter.emit({ type: 'copy-end', host: input.host, pathsSent: plan.toSend.length, bytesSent: plan.bytesToSend, durationMs });
    return {
      version: 1,
      host: input.host,
      pathsSent: plan.toSend.map((info) => info.path),
      pathsPresent: plan.present,
      bytesSent: plan.bytesToSend,
      durationMs,
    };
  } finally {
    connection.close();
  }
}

/** Input of {@link openServeConnection}. */
export interface OpenServeConnectionInput extends RemoteNixOptions {
  /** Name of the target in messages. */
  readonly host: string;
  /** The one connection to the target (an `SshSession`); one channel is opened on it. */
  readonly session: RemoteSpawner;
  /** How the remote nix-store gets write access (default `direct`: root or a trusted user). */
  readonly access?: StoreAccess | undefined;
  /** How long to wait for the server's hello ({@link DEFAULT_HELLO_TIMEOUT_MS}). */
  readonly helloTimeoutMs?: number | undefined;
  /**
   * `false`: a read-only `nix-store --serve` (queries only; the login user may run it without
   * sudo, e.g. with `access` left `direct`). Default true (`--write`, for {@link copyClosure}).
   */
  readonly write?: boolean | undefined;
}

/**
 * A `nix-store --serve --write` running on the target and greeted (see {@link openServeConnection}),
 * waiting for {@link copyClosure}, which uses it once and closes it.
 */
export interface ServeConnection {
  /** The server's protocol version (e.g. 0x207). */
  readonly serverVersion: number;
  /**
   * The closure of `paths` in the target's store with each path's registration (NAR size, hash,
   * references): `cmdQueryClosure` then `cmdQueryPathInfos`, two round trips, no process started
   * on the target. Queries run one at a time, before the copy.
   */
  queryClosure(paths: readonly string[]): Promise<ServePathInfo[]>;
  /** False once the remote process ended or failed (e.g. dropped while idle): start a new one then. */
  readonly isOpen: boolean;
  /** Stops the remote process and closes its channel (nothing is half-registered); idempotent. */
  close(): void;
}

export interface ServeConnectionState {
  readonly remote: ServeProcess;
  readonly reader: ServeReader;
  readonly watch: ServeWatch;
  /** Settles when the server's hello was read (rejects with the classified failure). */
  readonly greeted: Promise<number>;
  /** Settles when the queries asked so far are answered. */
  idle(): Promise<unknown>;
}

/** The streams behind each open connection (kept out of the public type). */
const connectionStates = new WeakMap<ServeConnection, ServeConnectionState>();

/** The streams of a connection from {@link startServeConnection} (internal to this package). */
export function stateOf(connection: ServeConnection): ServeConnectionState {
  const state = connectionStates.get(connection);
  if (state === undefined) throw new TypeError('not a connection from openServeConnection');
  return state;
}

/**
 * Starts `nix-store --serve --write` on the target (through sudo with `access`) and waits for its
 * hello, ahead of the copy: through sudo that proves the password (the `proveWith` of
 * `@pideploy/ssh`'s `createSudo`), so a deployment checks it once, with the command it needs anyway.
 * Hand the connection to {@link copyClosure} (`connection`), or close it.
 * @throws PideployError classified like a copy's failures: `PIDEPLOY_SUDO_PASSWORD_WRONG`,
 *   `PIDEPLOY_REMOTE_NIX_MISSING`, `PIDEPLOY_INTERRUPTED` …
 */
export async function openServeConnection(input: OpenServeConnectionInput, context: PideployContext): Promise<ServeConnection> {
  throwIfAborted(context.signal, input.host);
  const connection = await startServeConnection(input, context.signal);
  const state = stateOf(connection);
  try {
    await state.watch.guard(state.greeted);
  } catch (error) {
    connection.close();
    throw error;
  }
  // Whatever goes wrong from here (an idle drop, a query) is no longer about starting it.
  state.watch.phase = 'query';
  return connection;
}

/** How long {@link openServeConnection} waits for the server's hello by default. */
export const DEFAULT_HELLO_TIMEOUT_MS = 30_000;

/**
 * Spawns the serve process and sends the client hello; the server's hello is read in the
 * background (`greeted`). Internal to this package: {@link copyClosure} and `queryValidPaths`
 * write their first query right behind the hello (one round trip).
 */
export async function startServeConnection(input: OpenServeConnectionInput, signal: AbortSignal): Promise<ServeConnection> {
  const argv = serveCommand({ remoteProgram: input.remoteProgram, remoteStore: input.remoteStore }, input.write ?? true);
  const remote = await storeSpawner(input.session, input.access ?? { mode: 'direct' }).spawn(argv, { signal });
  const watch = watchServeProcess(remote, input.host, signal, argv);
  const reader = new ServeReader(remote.stdout);
  watch.phase = 'connect';
  remote.stdin.write(encodeClientHello());
  let serverVersion = 0;
  // sudo that refuses a password in words pideploy does not know (insults, a translation,
  // sudo-rs), or PAM asking something else (a one-time code), would wait for input forever.
  const timeoutMs = input.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS;
  const throughSudo = input.access?.mode === 'sudo';
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const said = lastLine(watch.stderr());
      reject(
        new PideployError({
          code: throughSudo ? SSH_ERROR_CODES.sudoNotAllowed : 'PIDEPLOY_COPY_FAILED',
          message: `nix-store --serve on ${input.host} did not answer within ${Math.round(timeoutMs / 1000)} s${throughSudo ? ' (started through sudo)' : ''}${said === '' ? '' : `: ${said}`}`,
          hint: throughSudo
            ? 'sudo may have refused the password in other words, or asks for more than it (a one-time code); check that `sudo -k -S -p "" -v` with the password alone works on the host'
            : 'check that nix-store --serve starts on the host (ssh HOST nix-store --version)',
        }),
      );
    }, timeoutMs);
  });
  const greeted = Promise.race([reader.readServerHello(), silent])
    .then((version) => (serverVersion = version))
    .finally(() => clearTimeout(timer));
  greeted.catch(() => undefined);
  let queue: Promise<unknown> = greeted;
  let ended = false;
  void remote.exit.then(() => (ended = true));
  const connection: ServeConnection = {
    get serverVersion() {
      return serverVersion;
    },
    get isOpen() {
      return !ended && !watch.done && !watch.failed;
    },
    queryClosure(paths) {
      const answer = watch.guard(queue).then(async () => {
        if (watch.done) throw new TypeError('the serve connection is closed');
        watch.phase = 'query';
        remote.stdin.write(encodeQueryClosure(paths));
        const closure = await watch.guard(reader.readStrings('the closure'));
        remote.stdin.write(encodeQueryPathInfos(closure));
        return watch.guard(readPathInfos(reader));
      });
      queue = answer.catch(() => undefined);
      return answer;
    },
    close() {
      clearTimeout(timer);
      watch.dispose();
      if (!watch.done) {
        watch.done = true;
        remote.kill('KILL');
      }
    },
  };
  connectionStates.set(connection, { remote, reader, watch, greeted, idle: () => queue });
  return connection;
}

async function sendPaths(
  plan: CopyPlan<StorePathInfo>,
  remote: ServeProcess,
  reader: ServeReader,
  watch: ServeWatch,
  host: string,
  context: PideployContext,
): Promise<void> {
  const meter = new TransferMeter(plan.bytesToSend);
  const report = () => {
    const snapshot = meter.snapshot();
    context.reporter.emit({ type: 'copy-progress', host, bytesSent: snapshot.bytesSent, bytesTotal: snapshot.bytesTotal, bytesPerSecond: snapshot.bytesPerSecond });
  };
  // Replies are read while later paths are already being sent (pipelining): the server handles
  // commands in order, so each reference is registered before the path that needs it is read.
  const replies = (async () => {
    for (const info of plan.toSend) {
      const reply = await reader.readU64(`the reply for ${info.path}`);
      if (reply !== 1) throw new PideployError({ code: 'PIDEPLOY_SERVE_PROTOCOL', message: `${host} answered ${reply} instead of 1 after receiving ${info.path}` });
      watch.pathsCopied += 1;
    }
  })();
  replies.catch(() => undefined);
  const writer = new BatchedWriter(remote, watch.stopped);
  for (const info of plan.toSend) {
    watch.path = info.path;
    const narHashHex = formatHash(parseHash(info.narHash, { expectedAlgorithm: 'sha256' }).digest, 'hex');
    await writer.write(encodeAddToStoreNarHeader({
      path: info.path,
      deriver: info.deriver,
      narHashHex,
      references: info.references,
      registrationTime: info.registrationTime,
      narSize: info.narSize,
      signatures: info.signatures,
      contentAddress: info.contentAddress,
    }));
    let sent = 0;
    for await (const chunk of dumpPathToNar(info.path)) {
      throwIfAborted(context.signal, host);
      sent += chunk.length;
      if (sent > info.narSize) break;
      await writer.write(chunk);
      meter.record(chunk.length);
      if (meter.shouldReport()) report();
    }
    if (sent !== info.narSize) {
      // Stop before the server could register anything: it is waiting for the rest of the NAR.
      throw new PideployError({
        code: 'PIDEPLOY_LOCAL_PATH_CHANGED',
        message: `${info.path} no longer matches the local store's record (NAR ${sent === info.narSize + 1 ? 'longer' : `${sent} bytes`}, recorded ${info.narSize})`,
        hint: 'the local store is damaged: run nix-store --verify --check-contents --repair',
      });
    }
  }
  await writer.flush();
  if (plan.toSend.length > 0) report();
  await replies;
}

/**
 * Bytes per write to the channel. NARs of small files come as many tiny buffers; one SSH packet
 * (and TCP segment) each would cost ~4 % on the wire for a closure of small paths, so they are
 * gathered up to the size of one SSH packet payload (ssh2's default maximum is 32 KiB).
 */
const WRITE_BATCH_BYTES = 32 * 1024;

/** Gathers small writes into batches of {@link WRITE_BATCH_BYTES}; honours backpressure. */
class BatchedWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /** `stopped` ends a wait for the channel to drain (the copy failed elsewhere), so the NAR stream closes its files. */
  constructor(
    private readonly remote: ServeProcess,
    private readonly stopped: AbortSignal,
  ) {}

  async write(bytes: Buffer): Promise<void> {
    if (this.pendingBytes === 0 && bytes.length >= WRITE_BATCH_BYTES) return this.writeNow(bytes);
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
    if (this.pendingBytes >= WRITE_BATCH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const batch = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.writeNow(batch);
  }

  private async writeNow(bytes: Buffer): Promise<void> {
    if (!this.remote.stdin.write(bytes)) await once(this.remote.stdin, 'drain', { signal: this.stopped });
  }
}

/**
 * Ends a serve session cleanly: EOF to the server, its stdout read to the end (an SSH channel only
 * closes, and reports its exit, once consumed), nothing unexpected after `after`, exit 0.
 */
export async function finishServe(state: ServeConnectionState, host: string, after: string): Promise<void> {
  const { remote, reader, watch } = state;
  watch.phase = 'finish';
  remote.stdin.end();
  const trailing = await watch.guard(reader.readToEnd(), true);
  if (trailing.length > 0) throw serveProtocolError(`${host} sent ${trailing.length} unexpected bytes after ${after}`);
  const exit = await watch.guard(remote.exit, true);
  if (exit.exitCode !== 0) throw watch.failure(exit.exitCode);
  watch.done = true;
}

function throwIfAborted(signal: AbortSignal, host: string): void {
  if (signal.aborted) {
    throw new PideployError({
      code: 'PIDEPLOY_INTERRUPTED',
      message: `copy to ${host} interrupted; nothing half-copied is registered on the target`,
      hint: 'run the same command again: it sends only what is still missing',
      cause: signal.reason,
    });
  }
}

export interface ServeWatch {
  phase: ServeFailurePhase;
  path: string | undefined;
  pathsCopied: number;
  pathsToSend: number | undefined;
  done: boolean;
  /** Aborted once the copy is over, however it ended: nothing may wait on the channel after that. */
  readonly stopped: AbortSignal;
  /** Races `promise` against the process failing (exit, sudo refusing the password, abort). */
  guard<T>(promise: Promise<T>, exitExpected?: boolean): Promise<T>;
  failure(exitCode: number | null): PideployError;
  /** The remote's stderr so far (its tail). */
  stderr(): string;
  /** True once a failure was seen (the process exited early, sudo refused, an abort). */
  readonly failed: boolean;
  dispose(): void;
}

/** Watches stderr and exit of the serve process and turns failures into classified errors. */
function watchServeProcess(remote: ServeProcess, host: string, signal: AbortSignal, command: readonly string[]): ServeWatch {
  let stderr = '';
  let rejectFailed: (error: unknown) => void = () => undefined;
  let hasFailed = false;
  const failed = new Promise<never>((_, reject) => {
    rejectFailed = (error) => {
      hasFailed = true;
      reject(error);
    };
  });
  failed.catch(() => undefined);
  let exitExpected = false;
  const stop = new AbortController();
  const watch: ServeWatch = {
    phase: 'connect',
    path: undefined,
    pathsCopied: 0,
    pathsToSend: undefined,
    done: false,
    stopped: stop.signal,
    async guard<T>(promise: Promise<T>, expectExit = false): Promise<T> {
      exitExpected = expectExit;
      try {
        return await Promise.race([promise, failed]);
      } catch (error) {
        if (error instanceof ServeStreamEnded || isStreamError(error)) {
          // stdout ended or the pipe broke: the exit status and stderr tell why.
          const exit = await Promise.race([remote.exit, delay(2000).then(() => ({ exitCode: null, signal: null }))]);
          throw watch.failure(exit.exitCode);
        }
        throw error;
      }
    },
    failure(exitCode: number | null): PideployError {
      return classifyServeFailure({
        host,
        phase: watch.phase,
        stderr: stderr.trim(),
        exitCode,
        path: watch.path,
        pathsCopied: watch.pathsCopied,
        pathsToSend: watch.pathsToSend,
        command,
      });
    },
    stderr: () => stderr.trim(),
    get failed() {
      return hasFailed;
    },
    dispose() {
      stop.abort();
      signal.removeEventListener('abort', onAbort);
      remote.stderr.off('data', onStderr);
    },
  };
  const onStderr = (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    // sudo -S waits for another try after a wrong password: fail now rather than feed it protocol bytes.
    if (watch.phase === 'connect' && SUDO_WRONG_PASSWORD.test(stderr)) rejectFailed(watch.failure(1));
  };
  const onAbort = () => {
    remote.kill('TERM');
    rejectFailed(
      new PideployError({
        code: 'PIDEPLOY_INTERRUPTED',
        message: `copy to ${host} interrupted; nothing half-copied is registered on the target`,
        hint: 'run the same command again: it sends only what is still missing',
        cause: signal.reason,
      }),
    );
  };
  remote.stderr.on('data', onStderr);
  remote.stdin.on('error', () => undefined); // EPIPE when the remote exits early: the exit status tells
  signal.addEventListener('abort', onAbort, { once: true });
  void remote.exit.then(async (exit) => {
    if (exitExpected && exit.exitCode === 0) return;
    await delay(20); // let the last stderr bytes arrive
    if (!watch.done) rejectFailed(watch.failure(exit.exitCode));
  });
  return watch;
}

function isStreamError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END' || code === 'ECONNRESET';
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
