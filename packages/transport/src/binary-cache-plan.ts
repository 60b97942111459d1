import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { planCopy, type ClosurePathInfo, type CopyPlan } from './closure-plan.js';
import { REMOTE_NIX_MISSING, classifySudoFailure, lastLine, remoteFailureMaker, type RemoteNixOptions } from './remote-serve.js';

/**
 * Pure planning of the fleet cache: store URLs, which paths to push, which HTTP paths a cache
 * serves, the target's substitution command, and what its failures mean. No I/O here.
 */

/** NAR compressions Nix 2.8 writes and reads in binary caches (`compression=` of the store URL). */
export const CACHE_COMPRESSIONS = ['zstd', 'xz', 'bzip2', 'br', 'gzip', 'none'] as const;

/** One of {@link CACHE_COMPRESSIONS}. */
export type CacheCompression = (typeof CACHE_COMPRESSIONS)[number];

/**
 * The default compression: zstd. Nix's own default, xz, packs ~10 % smaller but decompresses
 * several times slower, and on a Pi the decompression, not the LAN, is the bottleneck.
 */
export const DEFAULT_CACHE_COMPRESSION: CacheCompression = 'zstd';

/** Options of {@link binaryCacheStoreUrl}. */
export interface BinaryCacheStoreUrlOptions {
  /** Absolute directory of the cache. */
  readonly directory: string;
  /** Absolute path of the secret key file that signs what is written (omit for read-only use). */
  readonly secretKeyFile?: string | undefined;
  /** NAR compression (default {@link DEFAULT_CACHE_COMPRESSION}). */
  readonly compression?: CacheCompression | undefined;
}

function usage(message: string, hint: string): PideployError {
  return new PideployError({ code: 'PIDEPLOY_USAGE', message, hint });
}

/**
 * The Nix store URL of a local binary cache: `file://<dir>?compression=…&secret-key=<file>`.
 * Nix splits the URL at `?`, `&` and `=` without unescaping the path, so paths holding those
 * characters (or `%`, `#`, whitespace) are refused rather than mangled.
 * @throws PideployError `PIDEPLOY_USAGE` for relative paths, such characters, or an unknown compression.
 */
export function binaryCacheStoreUrl(options: BinaryCacheStoreUrlOptions): string {
  const compression = options.compression ?? DEFAULT_CACHE_COMPRESSION;
  if (!(CACHE_COMPRESSIONS as readonly string[]).includes(compression)) {
    throw usage(`unknown binary cache compression "${compression}"`, `use one of ${CACHE_COMPRESSIONS.join(', ')}`);
  }
  const checked = (what: string, file: string): string => {
    if (!path.isAbsolute(file)) throw usage(`the ${what} must be an absolute path, not "${file}"`, 'resolve it first (path.resolve)');
    if (/[?&=%#\s]/u.test(file)) throw usage(`the ${what} "${file}" contains a character a Nix store URL cannot carry (? & = % # or whitespace)`, 'use a path without them');
    return path.normalize(file);
  };
  const directory = checked('cache directory', options.directory);
  const parameters = [`compression=${compression}`];
  if (options.secretKeyFile !== undefined) parameters.push(`secret-key=${checked('secret key file', options.secretKeyFile)}`);
  return `file://${directory}?${parameters.join('&')}`;
}

/** What a push must write and what the cache already holds. */
export interface CachePushPlan<Info extends ClosurePathInfo = ClosurePathInfo> {
  /** Closure paths without a narinfo in the cache, dependencies first. */
  readonly toPush: readonly Info[];
  /** Closure paths whose narinfo is already there. */
  readonly present: readonly string[];
  /** Σ narSize of {@link toPush} (before compression). */
  readonly narBytesToPush: number;
}

/** Splits a closure into paths to push and paths the cache has (by their narinfo). */
export function planCachePush<Info extends ClosurePathInfo>(closure: readonly Info[], inCache: Iterable<string>): CachePushPlan<Info> {
  const plan = planCopy(closure, inCache);
  return { toPush: plan.toSend, present: plan.present, narBytesToPush: plan.bytesToSend };
}

const NARINFO_REQUEST = /^\/([0-9abcdfghijklmnpqrsvwxyz]{32})\.narinfo$/u;
const NAR_REQUEST = /^\/nar\/([0-9abcdfghijklmnpqrsvwxyz]{52}\.nar(?:\.(?:xz|zst|bz2|br|gz|lz4|lzip))?)$/u;

/**
 * The file (relative to the cache directory) that an HTTP request path names, or undefined.
 * Only what Nix asks a binary cache for exists: `/nix-cache-info`, `/<hash>.narinfo` and
 * `/nar/<filehash>.nar[.<ext>]`. Anything else, including percent-escapes, `..`, and
 * doubled slashes, is not found, so no request can reach outside the cache.
 */
export function cacheFileForRequest(requestPath: string): string | undefined {
  if (requestPath === '/nix-cache-info') return 'nix-cache-info';
  const narinfo = NARINFO_REQUEST.exec(requestPath);
  if (narinfo !== null) return `${narinfo[1]}.narinfo`;
  const nar = NAR_REQUEST.exec(requestPath);
  if (nar !== null) return `nar/${nar[1]}`;
  return undefined;
}

/** The Content-Type a binary cache serves a file with (as Nix's own HTTP caches do). */
export function cacheContentType(file: string): string {
  if (file === 'nix-cache-info') return 'text/x-nix-cache-info';
  if (file.endsWith('.narinfo')) return 'text/x-nix-narinfo';
  return 'application/x-nix-nar';
}

/**
 * Where a tunnel must connect to reach a cache URL served on this machine (`http://host:port`).
 * @throws PideployError `PIDEPLOY_USAGE` for other schemes or a URL without a port.
 */
export function tunnelEndpoint(cacheUrl: string): { readonly host: string; readonly port: number } {
  let url: URL;
  try {
    url = new URL(cacheUrl);
  } catch {
    throw usage(`"${cacheUrl}" is not a URL`, 'pass the url that serveBinaryCache returned');
  }
  if (url.protocol !== 'http:' || url.port === '' || url.search !== '' || url.username !== '') {
    throw usage(`a tunnelled cache must be a plain http://host:port URL on this machine, not "${cacheUrl}"`, 'pass the url that serveBinaryCache returned, or set tunnel: false for a URL the host reaches itself');
  }
  return { host: url.hostname.replace(/^\[(.*)\]$/u, '$1'), port: Number(url.port) };
}

/** The URL the host uses for a tunnelled cache: its own loopback, the forwarded port, the same path. */
export function tunnelledCacheUrl(cacheUrl: string, remotePort: number): string {
  const pathname = new URL(cacheUrl).pathname.replace(/\/+$/u, '');
  return `http://127.0.0.1:${remotePort}${pathname}`;
}

/** Options of {@link substituteCommand}. */
export interface SubstituteCommandOptions extends RemoteNixOptions {
  /** Store paths to realise (the tops of what is missing). */
  readonly paths: readonly string[];
  /** The cache URL as the host sees it. */
  readonly cacheUrl: string;
  /** Public keys (`name:base64`) whose signatures the host accepts, and no others. */
  readonly publicKeys: readonly string[];
  /** How many paths Nix fetches and unpacks at once (default {@link DEFAULT_SUBSTITUTE_JOBS}). */
  readonly maxJobs?: number | undefined;
}

/**
 * Paths fetched at once by default. Nix 2.8 runs substitutions in its build slots (`max-jobs`,
 * often 1), one HTTP round trip after the other; 8 at once took a 201-path closure from 0.8 s
 * to 0.45 s on a lab host. Nothing is built: realising output paths only substitutes.
 */
export const DEFAULT_SUBSTITUTE_JOBS = 8;

/**
 * The target's command: `nix-store --realise` with the cache as the ONLY substituter, the given
 * keys as the ONLY trusted keys, signatures required (whatever its nix.conf says), and no
 * negative narinfo caching (a path pushed after an earlier miss is found), `maxJobs` paths at
 * once. Run through sudo by the spawner of `storeSpawner` when the login user is not trusted.
 */
export function substituteCommand(options: SubstituteCommandOptions): readonly string[] {
  if (options.paths.length === 0) throw new TypeError('substituteCommand needs at least one path');
  if (options.publicKeys.length === 0) throw new TypeError('substituteCommand needs at least one public key');
  const maxJobs = options.maxJobs ?? DEFAULT_SUBSTITUTE_JOBS;
  if (!Number.isInteger(maxJobs) || maxJobs < 1) throw usage(`maxJobs must be a whole number ≥ 1, not ${maxJobs}`, 'for example 8');
  const argv = [
    options.remoteProgram ?? 'nix-store',
    '--realise',
    ...(options.remoteStore === undefined ? [] : ['--store', options.remoteStore]),
    '--option', 'substituters', options.cacheUrl,
    '--option', 'trusted-public-keys', options.publicKeys.join(' '),
    '--option', 'require-sigs', 'true',
    '--option', 'narinfo-cache-negative-ttl', '0',
    '--option', 'max-jobs', String(maxJobs),
    '--',
    ...options.paths,
  ];
  return argv;
}

/** What a substitution fetches, what the host has, and which paths to name on its command line. */
export interface SubstitutionPlan<Info extends ClosurePathInfo = ClosurePathInfo> extends CopyPlan<Info> {
  /**
   * The missing paths no other missing path refers to: realising them fetches all of
   * {@link CopyPlan.toSend} (Nix substitutes references first) and keeps the command line short.
   */
  readonly roots: readonly string[];
}

/** Plans a substitution from the closure and the paths valid on the host. */
export function planSubstitution<Info extends ClosurePathInfo>(closure: readonly Info[], validOnHost: Iterable<string>): SubstitutionPlan<Info> {
  const plan = planCopy(closure, validOnHost);
  const referenced = new Set<string>();
  for (const info of plan.toSend) for (const reference of info.references) if (reference !== info.path) referenced.add(reference);
  return { ...plan, roots: plan.toSend.map((info) => info.path).filter((storePath) => !referenced.has(storePath)) };
}

/** The store path of a `copying path '<path>' from '<url>'...` line of Nix, or undefined. */
export function parseSubstituteProgress(line: string): string | undefined {
  return /^copying path '([^']+)' from '/u.exec(line)?.[1];
}

/** Input of {@link classifySubstituteFailure}. */
export interface SubstituteFailure {
  /** Host name for the message. */
  readonly host: string;
  /** The cache URL as the host saw it. */
  readonly cacheUrl: string;
  /** Names of the trusted keys (for the message). */
  readonly keyNames: readonly string[];
  /** The remote command's stderr. */
  readonly stderr: string;
  /** Its exit code; null when the connection dropped. */
  readonly exitCode: number | null;
  /** Whether the cache was reached through an SSH tunnel. */
  readonly tunnel: boolean;
}

/**
 * Turns the host's `nix-store --realise` failure into one PideployError with a hint: wrong sudo
 * password, a cache signed by another key (refused by the host's Nix), a damaged NAR, a cache
 * the host cannot reach, paths missing from the cache, an untrusted login user. Pure.
 */
export function classifySubstituteFailure(failure: SubstituteFailure): PideployError {
  const { host, stderr } = failure;
  const make = remoteFailureMaker(['nix-store', '--realise', '--option', 'substituters', failure.cacheUrl], failure.exitCode, stderr);
  const sudo = classifySudoFailure(host, stderr, 'nothing was fetched');
  if (sudo !== undefined) return make(sudo.code, sudo.message, sudo.hint);
  if (/ignoring untrusted substituter|ignoring the client-specified setting '(?:substituters|trusted-public-keys|require-sigs)'/u.test(stderr)) {
    return make(
      'PIDEPLOY_CACHE_UNTRUSTED_USER',
      `${host}'s nix-daemon ignored the cache settings: the login user is not a trusted Nix user there; nothing was fetched`,
      'give the sudo password (access: sudo) so the paths are substituted as root, or add the user to nix.settings.trusted-users',
    );
  }
  const unsigned = /substitute for '([^']+)' from '[^']*' is not signed by any of the keys in 'trusted-public-keys'|'([^']+)' lacks a valid signature/u.exec(stderr);
  if (unsigned !== null) {
    return make(
      'PIDEPLOY_CACHE_SIGNATURE_UNTRUSTED',
      `${host} refused ${unsigned[1] ?? unsigned[2]} from the cache: it is not signed by the trusted key ${failure.keyNames.join(', ')}; nothing unsigned was imported`,
      'pass the public key that belongs to the secret key the cache was pushed with (or push again with the right key: pushToBinaryCache re-signs what is there)',
    );
  }
  const corrupt = /hash mismatch importing path '([^']+)'|NAR hash mismatch[^\n]*'([^']+)'|failed to read compressed data|Failed to open archive|decompression error|Corrupted input data|Truncated [a-z0-9]+ input|bad archive|input compression not recognized/iu.exec(stderr);
  if (corrupt !== null) {
    const fetching = [...stderr.matchAll(/^copying path '([^']+)' from '/gmu)].at(-1)?.[1];
    return make(
      'PIDEPLOY_CACHE_NAR_CORRUPT',
      `${host} rejected ${corrupt[1] ?? corrupt[2] ?? fetching ?? 'a NAR'} from the cache: the NAR file is damaged (it does not unpack to its signed hash); nothing damaged was imported`,
      'the cache directory is damaged: delete it (or the path’s .narinfo and NAR file) and push again',
    );
  }
  if (/No space left on device|disk quota exceeded/iu.test(stderr)) {
    return make('PIDEPLOY_TARGET_STORE_FULL', `the Nix store on ${host} ran out of space while fetching from the cache`, 'free space on the target (sudo nix-collect-garbage -d) or grow its /nix, then run the same command again');
  }
  if (/unable to download '[^']*nix-cache-info'|Couldn't connect to server|Failure when receiving data from the peer|Connection refused/u.test(stderr)) {
    return make(
      'PIDEPLOY_CACHE_UNREACHABLE',
      `${host} cannot reach the cache at ${failure.cacheUrl}${failure.tunnel ? ' (through the SSH tunnel)' : ''}: ${lastLine(stderr.split('\n').filter((line) => /unable to download/u.test(line)).join('\n')) || lastLine(stderr)}`,
      failure.tunnel ? 'keep the cache server running (serveBinaryCache) until every host has substituted' : 'check that the host can reach that URL (address, port, firewall), or use the SSH tunnel (tunnel: true)',
      true,
    );
  }
  const missing = /file '([^']+)' does not exist in binary cache|don't know how to build these paths:\s*\n\s*(\S+)|path '([^']+)' is required, but there is no substituter/u.exec(stderr);
  if (missing !== null) {
    return make(
      'PIDEPLOY_CACHE_INCOMPLETE',
      `the cache lacks ${missing[1] ?? missing[2] ?? missing[3]}, which ${host} needs`,
      'push the closure to the cache again (pushToBinaryCache writes what is missing) before substituting',
    );
  }
  if (REMOTE_NIX_MISSING.test(stderr)) {
    return make('PIDEPLOY_REMOTE_NIX_MISSING', `nix-store is not on the PATH of non-interactive SSH sessions on ${host}`, 'install Nix on the target (it runs NixOS?), or make nix-store reachable through PATH');
  }
  if (failure.exitCode === null) {
    return make('PIDEPLOY_COPY_CONNECTION_LOST', `the SSH connection to ${host} was cut while it fetched from the cache`, 'run the same command again: Nix registers only complete paths, and fetches only what is still missing', true);
  }
  const detail = lastLine(stderr);
  return make(
    'PIDEPLOY_CACHE_SUBSTITUTE_FAILED',
    `nix-store --realise from the cache failed on ${host} (exit ${failure.exitCode})${detail === '' ? '' : `: ${detail}`}`,
    'rerun with --verbose to see the host’s full output',
  );
}
