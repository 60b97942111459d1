import { PideployError, type PideployContext } from '@pideploy/core';
import { queryClosurePathInfos, type StorePathInfo } from '@pideploy/nix';
import type { RemoteForwardOptions, RemotePortForward } from '@pideploy/ssh';
import { classifySubstituteFailure, parseSubstituteProgress, planSubstitution, substituteCommand, tunnelEndpoint, tunnelledCacheUrl } from './binary-cache-plan.js';
import { parseCachePublicKey } from './narinfo.js';
import { TransferMeter } from './progress.js';
import { queryValidPaths } from './query-valid-paths.js';
import { storeSpawner, type RemoteNixOptions, type RemoteSpawner, type StoreAccess } from './remote-serve.js';

/**
 * The connection {@link substituteFromCache} uses: an `SshSession` of `@pideploy/ssh`. Remote port
 * forwarding is only needed for the tunnel.
 */
export interface SubstituteSession extends RemoteSpawner {
  /** `SshSession.forwardRemotePort` (`ssh -R` over the same login). */
  forwardRemotePort?(options: RemoteForwardOptions): Promise<RemotePortForward>;
}

/** Input of {@link substituteFromCache}. */
export interface SubstituteFromCacheInput extends RemoteNixOptions {
  /** Name of the target in events and messages. */
  readonly host: string;
  /** The one connection to the target; the substitution uses channels (and a tunnel) on it. */
  readonly session: SubstituteSession;
  /** Store paths (or symlinks to them) whose closures the target must have. */
  readonly paths: readonly string[];
  /**
   * The binary cache's HTTP URL. With `tunnel` (the default) the URL as reachable from THIS
   * machine (`serveBinaryCache().url`); without, the URL as the target reaches it itself.
   */
  readonly cacheUrl: string;
  /**
   * Reach the cache through SSH remote port forwarding over `session` (default true): the target
   * fetches from its own `127.0.0.1:<port>`, which leads back to `cacheUrl` here. No firewall
   * opening and no new login needed. False: the target uses `cacheUrl` as is.
   */
  readonly tunnel?: boolean | undefined;
  /**
   * The public key(s) (`name:base64`) the target may accept signatures from. They replace the
   * target's own `trusted-public-keys` for this command, and signatures are required even if
   * its nix.conf says otherwise, so a cache signed with any other key is refused.
   */
  readonly publicKey: string | readonly string[];
  /**
   * How the target's Nix gets to use the cache (default `direct`). The cache is a restricted
   * setting: `direct` works for root and `trusted-users` only; otherwise use `sudo` (the password
   * goes to sudo on stdin, never into argv, env, events or errors).
   */
  readonly access?: StoreAccess | undefined;
  /** How many paths the target fetches and unpacks at once (default 8, see `DEFAULT_SUBSTITUTE_JOBS`). */
  readonly maxJobs?: number | undefined;
  /** Path infos of the whole closure (e.g. `pushToBinaryCache`'s `closure`); default: asked from the local store. */
  readonly closure?: readonly StorePathInfo[] | undefined;
  /** Environment for the local nix query (default this process's). */
  readonly localNixEnv?: NodeJS.ProcessEnv | undefined;
}

/** What {@link substituteFromCache} did on one target. */
export interface SubstituteFromCacheResult {
  /** Format version of this result (JSON artifact). */
  readonly version: 1;
  /** The target's name, as given. */
  readonly host: string;
  /** Paths the target fetched from the cache, dependencies first. */
  readonly pathsFetched: readonly string[];
  /** Closure paths the target already had (not fetched, not even asked for). */
  readonly pathsPresent: readonly string[];
  /** Σ NAR size of the fetched paths (uncompressed). */
  readonly narBytesFetched: number;
  /** Bytes the cache sent to the target through the tunnel (compressed NARs + narinfos); 0 without one. */
  readonly tunnelBytes: number;
  /** The cache URL the target used (undefined when nothing was missing and no fetch ran). */
  readonly cacheUrlOnHost: string | undefined;
  /** Wall time of the whole call, milliseconds. */
  readonly durationMs: number;
}

const STDERR_KEEP = 64 * 1024;

/**
 * Makes the target fetch the missing part of a closure from a signed binary cache with Nix's own
 * substitution (`nix-store --realise`, the cache as its only substituter, the given key as its
 * only trusted key). First one round trip asks which closure paths the target lacks; with none
 * missing nothing else happens. Otherwise the cache is reached through an SSH tunnel over the
 * session (default) or directly, and only the missing paths are downloaded; the target's Nix
 * checks every signature and NAR hash and registers only complete, verified paths. Emits
 * `copy-plan`, `copy-progress` (per fetched path) and `copy-end`.
 * @throws PideployError `PIDEPLOY_CACHE_SIGNATURE_UNTRUSTED` (signed by another key),
 *   `PIDEPLOY_CACHE_NAR_CORRUPT`, `PIDEPLOY_CACHE_UNREACHABLE`, `PIDEPLOY_CACHE_INCOMPLETE`,
 *   `PIDEPLOY_CACHE_UNTRUSTED_USER`, `PIDEPLOY_SUDO_PASSWORD_WRONG`, `PIDEPLOY_SSH_FORWARD_REFUSED`,
 *   `PIDEPLOY_CACHE_KEY_INVALID`, `PIDEPLOY_INTERRUPTED` …
 */
export async function substituteFromCache(input: SubstituteFromCacheInput, context: PideployContext): Promise<SubstituteFromCacheResult> {
  const startedAt = performance.now();
  const access = input.access ?? { mode: 'direct' };
  const tunnel = input.tunnel ?? true;
  const publicKeys = (typeof input.publicKey === 'string' ? [input.publicKey] : [...input.publicKey]).map((text) => parseCachePublicKey(text));
  if (publicKeys.length === 0) throw new PideployError({ code: 'PIDEPLOY_USAGE', message: 'substituteFromCache needs the cache’s public key', hint: 'pass pushToBinaryCache’s publicKey' });
  const endpoint = tunnel ? tunnelEndpoint(input.cacheUrl) : undefined;
  if (tunnel && input.session.forwardRemotePort === undefined) {
    throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `the session to ${input.host} cannot forward ports`, hint: 'pass an SshSession, or tunnel: false with a URL the host reaches' });
  }
  const closure = input.closure ?? (await queryClosurePathInfos(input.paths, { env: input.localNixEnv, signal: context.signal }));
  const remote = { remoteProgram: input.remoteProgram, remoteStore: input.remoteStore };
  const valid = await queryValidPaths(
    input.session,
    closure.map((info) => info.path),
    { host: input.host, signal: context.signal, ...remote },
  );
  const plan = planSubstitution(closure, valid);
  context.reporter.emit({ type: 'copy-plan', host: input.host, pathsToSend: plan.toSend.length, bytesToSend: plan.bytesToSend, pathsPresent: plan.present.length });
  const finish = (tunnelBytes: number, cacheUrlOnHost: string | undefined): SubstituteFromCacheResult => {
    const durationMs = Math.round(performance.now() - startedAt);
    context.reporter.emit({ type: 'copy-end', host: input.host, pathsSent: plan.toSend.length, bytesSent: plan.bytesToSend, durationMs });
    return {
      version: 1,
      host: input.host,
      pathsFetched: plan.toSend.map((info) => info.path),
      pathsPresent: plan.present,
      narBytesFetched: plan.bytesToSend,
      tunnelBytes,
      cacheUrlOnHost,
      durationMs,
    };
  };
  if (plan.toSend.length === 0) return finish(0, undefined);

  const forward = endpoint === undefined ? undefined : await (input.session.forwardRemotePort as NonNullable<SubstituteSession['forwardRemotePort']>)({ to: endpoint });
  try {
    const cacheUrlOnHost = forward === undefined ? input.cacheUrl : tunnelledCacheUrl(input.cacheUrl, forward.remotePort);
    const command = substituteCommand({
      paths: plan.roots,
      cacheUrl: cacheUrlOnHost,
      publicKeys: publicKeys.map((key) => `${key.name}:${key.key.toString('base64')}`),
      maxJobs: input.maxJobs,
      ...remote,
    });
    if (context.signal.aborted) throw interrupted(input.host, context.signal.reason);
    const realise = await storeSpawner(input.session, access).spawn(command, { signal: context.signal });
    realise.stdin.on('error', () => undefined);
    realise.stdin.end();
    realise.stdout.resume(); // the realised paths; the channel only closes once stdout is consumed

    const sizes = new Map(plan.toSend.map((info) => [info.path, info.narSize]));
    const meter = new TransferMeter(plan.bytesToSend);
    let current: string | undefined;
    let stderr = '';
    let pending = '';
    const completeCurrent = () => {
      if (current === undefined) return;
      meter.record(sizes.get(current) ?? 0);
      current = undefined;
      const snapshot = meter.snapshot();
      context.reporter.emit({ type: 'copy-progress', host: input.host, bytesSent: snapshot.bytesSent, bytesTotal: snapshot.bytesTotal, bytesPerSecond: snapshot.bytesPerSecond });
    };
    realise.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      stderr = (stderr + text).slice(-STDERR_KEEP);
      const lines = (pending + text).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const started = parseSubstituteProgress(line);
        if (started === undefined) continue;
        // Nix announces a path when it starts fetching it; the one before is done by then (or runs in parallel).
        completeCurrent();
        current = started;
      }
    });
    const onAbort = () => realise.kill('TERM');
    context.signal.addEventListener('abort', onAbort, { once: true });
    const exit = await realise.exit.finally(() => context.signal.removeEventListener('abort', onAbort));
    if (context.signal.aborted) throw interrupted(input.host, context.signal.reason);
    await new Promise((resolve) => setImmediate(resolve)); // the last stderr bytes
    if (exit.exitCode !== 0) {
      throw classifySubstituteFailure({
        host: input.host,
        cacheUrl: cacheUrlOnHost,
        keyNames: publicKeys.map((key) => key.name),
        stderr,
        exitCode: exit.exitCode,
        tunnel: forward !== undefined,
      });
    }
    completeCurrent();
    return finish(forward?.bytesToRemote ?? 0, cacheUrlOnHost);
  } finally {
    await forward?.close();
  }
}

function interrupted(host: string, cause: unknown): PideployError {
  return new PideployError({
    code: 'PIDEPLOY_INTERRUPTED',
    message: `fetching from the cache on ${host} was interrupted; Nix registers only complete, verified paths`,
    hint: 'run the same command again: it fetches only what is still missing',
    cause,
  });
}
