import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { PideployContext } from '@pideploy/core';
import { formatHash, hashPathNar, makeFixedOutputPath, parseHash, type TarballTopLevelRule } from '@pideploy/nix';
import { defaultCacheDir, pinCacheLayout, readCachedHash, writeCachedHash } from './cache.js';
import { hashTarballFile, hashTarballUrl, type DownloadProgress } from './download.js';
import { pinError, usageError } from './errors.js';
import { pinsLocation, readExistingPinsFile, readPinsFile, writePinsFiles } from './files.js';
import {
  githubArchiveUrl,
  githubEndpointsFromEnv,
  parseGithubRepository,
  validateGithubRef,
  type GithubRef,
  type GithubRepository,
} from './github.js';
import { emptyPinsFile, orderPin, pinNixHash, sortedPinNames, validatePinName, type Pin, type PinsFile } from './lockfile.js';
import { resolveGithubRev } from './resolve.js';
import { resolveRetryPolicy, type RetryPolicy } from './retry.js';

/** Options every pin operation that goes to the network accepts. */
export interface PinNetworkOptions {
  /**
   * Environment to read `PIDEPLOY_GITHUB_API`, `PIDEPLOY_GITHUB_ARCHIVE`, `GITHUB_TOKEN`,
   * `XDG_CACHE_HOME` and `HOME` from (default `process.env`).
   */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
  /** Cache directory (default `$XDG_CACHE_HOME/pideploy`, else `~/.cache/pideploy`). */
  readonly cacheDir?: string | undefined;
  /** Retries of transient network failures (default {@link DEFAULT_RETRY_POLICY}). */
  readonly retryPolicy?: Partial<RetryPolicy> | undefined;
  /** Receives download progress (bytes so far / total), e.g. to draw a progress bar. */
  readonly onDownloadProgress?: ((progress: DownloadProgress) => void) | undefined;
}

/** Where a pin comes from. */
export type PinSource =
  | {
      readonly type: 'github';
      /** `OWNER/REPO` or its parts. */
      readonly repository: string | GithubRepository;
      /** Branch, tag or commit to pin. */
      readonly ref: GithubRef;
    }
  | {
      readonly type: 'url';
      /** Any tarball URL (http, https or file) with exactly one top-level entry. */
      readonly url: string;
    };

/** The flags of `pin add`, as the CLI has them. */
export interface PinSourceArguments {
  /** `--github OWNER/REPO`. */
  readonly github?: string | undefined;
  /** `--branch B`. */
  readonly branch?: string | undefined;
  /** `--tag T`. */
  readonly tag?: string | undefined;
  /** `--rev R`. */
  readonly rev?: string | undefined;
  /** `--url URL`. */
  readonly url?: string | undefined;
}

/**
 * Turns `pin add` flags into a checked {@link PinSource} (pure): exactly one of `--github` and
 * `--url`; with `--github` exactly one of `--branch`, `--tag`, `--rev`.
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function parsePinSourceArguments(args: PinSourceArguments): PinSource {
  const usage = 'pideploy pin add <name> (--github O/R (--branch B | --tag T | --rev R) | --url URL)';
  if ((args.github === undefined) === (args.url === undefined)) {
    throw usageError('pin add needs exactly one of --github and --url', usage);
  }
  if (args.url !== undefined) {
    if (args.branch !== undefined || args.tag !== undefined || args.rev !== undefined) {
      throw usageError('--branch, --tag and --rev go with --github, not --url', usage);
    }
    return { type: 'url', url: validateSourceUrl(args.url) };
  }
  const refs = [
    args.branch === undefined ? undefined : ({ kind: 'branch', name: args.branch } as const),
    args.tag === undefined ? undefined : ({ kind: 'tag', name: args.tag } as const),
    args.rev === undefined ? undefined : ({ kind: 'rev', rev: args.rev } as const),
  ].filter((ref) => ref !== undefined);
  if (refs.length !== 1) throw usageError('--github needs exactly one of --branch, --tag and --rev', usage);
  return { type: 'github', repository: parseGithubRepository(args.github as string), ref: validateGithubRef(refs[0] as GithubRef) };
}

/**
 * Checks a tarball URL (http, https or file; no credentials in it).
 * @throws PideployError `PIDEPLOY_USAGE`.
 */
export function validateSourceUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usageError(`"${url}" is not a URL`, 'give a tarball URL, e.g. https://github.com/NixOS/nixpkgs/archive/<rev>.tar.gz');
  }
  if (!['http:', 'https:', 'file:'].includes(parsed.protocol)) throw usageError(`"${url}" is not an http, https or file URL`, 'give a tarball URL');
  if (parsed.username !== '' || parsed.password !== '') throw usageError('the URL must not contain credentials', 'pins.json and pins.nix are committed; keep secrets out of them');
  return url;
}

interface ResolvedOptions {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cacheDir: string;
  readonly retryPolicy: RetryPolicy;
  readonly onDownloadProgress: PinNetworkOptions['onDownloadProgress'];
}

function resolveOptions(options: PinNetworkOptions): ResolvedOptions {
  const env = options.env ?? process.env;
  return {
    env,
    cacheDir: options.cacheDir ?? defaultCacheDir(env),
    retryPolicy: resolveRetryPolicy(options.retryPolicy),
    onDownloadProgress: options.onDownloadProgress,
  };
}

/** The locked fields of a pin from a NAR hash (pure): nix32, SRI and the fetchTarball store path. */
export function lockedFields(url: string, narHash: Uint8Array): { url: string; sha256: string; narHash: string; storePath: string } {
  return {
    url,
    sha256: formatHash(narHash, 'nix32'),
    narHash: formatHash(narHash, 'sri'),
    storePath: makeFixedOutputPath({ name: 'source', recursive: true, narHash }),
  };
}

interface HashedUrl {
  readonly narHash: Buffer;
  readonly narSize: number;
  readonly cached: boolean;
}

/** Downloads and hashes a URL, consulting the cache only when `useCache` (immutable URLs). */
async function hashUrl(url: string, rule: TarballTopLevelRule, useCache: boolean, options: ResolvedOptions, context: PideployContext): Promise<HashedUrl> {
  if (useCache) {
    const cached = await readCachedHash(options.cacheDir, url, rule);
    if (cached !== undefined) {
      context.reporter.emit({ type: 'log', level: 'info', message: `${url}: hash from the cache (${options.cacheDir})` });
      return { narHash: parseHash(cached.narHash, { expectedAlgorithm: 'sha256' }).digest, narSize: cached.narSize, cached: true };
    }
  }
  context.reporter.emit({ type: 'log', level: 'info', message: `downloading ${url}` });
  const started = Date.now();
  const result = await hashTarballUrl(
    url,
    { topLevelRule: rule, retryPolicy: options.retryPolicy, tempDirectory: pinCacheLayout(options.cacheDir).temp, onProgress: options.onDownloadProgress },
    context,
  );
  context.reporter.emit({ type: 'log', level: 'debug', message: `${url}: ${result.downloadedBytes} bytes in ${Date.now() - started} ms, NAR ${result.narSize} bytes` });
  await writeCachedHash(options.cacheDir, {
    version: 1,
    url,
    rule,
    sha256: formatHash(result.narHash, 'nix32'),
    narHash: formatHash(result.narHash, 'sri'),
    narSize: result.narSize,
  });
  return { narHash: result.narHash, narSize: result.narSize, cached: false };
}

async function ensureTempDir(options: ResolvedOptions): Promise<void> {
  await mkdir(pinCacheLayout(options.cacheDir).temp, { recursive: true });
}

/** A new pin for a source: resolves GitHub refs, downloads and hashes. */
async function lockSource(source: PinSource, options: ResolvedOptions, context: PideployContext): Promise<{ pin: Pin; via: string; cached: boolean }> {
  await ensureTempDir(options);
  if (source.type === 'url') {
    const url = validateSourceUrl(source.url);
    const hashed = await hashUrl(url, 'fetchTarball', false, options, context);
    return { pin: { type: 'url', ...lockedFields(url, hashed.narHash) }, via: 'url', cached: false };
  }
  const repository = typeof source.repository === 'string' ? parseGithubRepository(source.repository) : parseGithubRepository(`${source.repository.owner}/${source.repository.repo}`);
  const ref = validateGithubRef(source.ref);
  const endpoints = githubEndpointsFromEnv(options.env);
  const token = options.env['GITHUB_TOKEN'];
  const resolved = await resolveGithubRev({ repository, ref, endpoints, token: token === '' ? undefined : token, retryPolicy: options.retryPolicy }, context);
  const url = githubArchiveUrl(endpoints.archiveBase, repository, resolved.rev);
  const hashed = await hashUrl(url, 'fetchTarball', true, options, context);
  const pin: Pin = {
    type: 'github',
    owner: repository.owner,
    repo: repository.repo,
    ...(ref.kind === 'branch' ? { branch: ref.name } : {}),
    ...(ref.kind === 'tag' ? { tag: ref.name } : {}),
    rev: resolved.rev,
    ...lockedFields(url, hashed.narHash),
  };
  return { pin: orderPin(pin), via: resolved.via, cached: hashed.cached };
}

/** Input of {@link addPin}. */
export interface AddPinInput extends PinNetworkOptions {
  /** The directory of pins.json / pins.nix (next to the configuration). */
  readonly dir: string;
  /** The pin's name, a Nix attribute name (`pins.<name>`). */
  readonly name: string;
  /** What to pin. */
  readonly source: PinSource;
  /** Replace an existing pin of the same name (default: refuse). */
  readonly force?: boolean | undefined;
}

/** What {@link addPin} did. */
export interface AddPinResult {
  /** The pin's name. */
  readonly name: string;
  /** The new pin as written. */
  readonly pin: Pin;
  /** The pin it replaced (with `force`). */
  readonly previous: Pin | undefined;
  /** How the commit was found: `given`, `api`, `git` (ls-remote fallback), or `url`. */
  readonly resolvedVia: string;
  /** True when the hash came from the cache (immutable URL seen before). */
  readonly cached: boolean;
  /** pins.json path. */
  readonly jsonFile: string;
  /** pins.nix path. */
  readonly nixFile: string;
}

/**
 * Pins a source under a name: resolves a GitHub branch/tag to its commit (API, else `git
 * ls-remote`), downloads the archive while hashing it as `builtins.fetchTarball` would, and
 * writes pins.json and pins.nix atomically. Nothing is written when anything fails.
 * @throws PideployError `PIDEPLOY_USAGE`, `PIDEPLOY_PIN_EXISTS`, the resolve/download codes, `PIDEPLOY_ARCHIVE_*`, `PIDEPLOY_PIN_WRITE_FAILED`.
 */
export async function addPin(input: AddPinInput, context: PideployContext): Promise<AddPinResult> {
  const name = validatePinName(input.name);
  const location = pinsLocation(input.dir);
  const existing = (await readPinsFile(location)) ?? emptyPinsFile();
  const previous = existing.pins[name];
  if (previous !== undefined && input.force !== true) {
    throw pinError('PIDEPLOY_PIN_EXISTS', `pin '${name}' already exists in ${location.jsonFile}`, `run \`pideploy pin update ${name}\` to move it, or add --force to replace it`);
  }
  const options = resolveOptions(input);
  const locked = await lockSource(input.source, options, context);
  const next: PinsFile = { version: 1, pins: { ...existing.pins, [name]: locked.pin } };
  await writePinsFiles(location, next);
  return { name, pin: locked.pin, previous, resolvedVia: locked.via, cached: locked.cached, jsonFile: location.jsonFile, nixFile: location.nixFile };
}

/** Input of {@link updatePins}. */
export interface UpdatePinsInput extends PinNetworkOptions {
  /** The directory of pins.json / pins.nix. */
  readonly dir: string;
  /** Pins to update (default: all). */
  readonly names?: readonly string[] | undefined;
}

/** One pin's update. */
export interface PinUpdate {
  /** The pin's name. */
  readonly name: string;
  /** Whether the pin changed (new rev or new hash). */
  readonly changed: boolean;
  /** The commit before (GitHub pins). */
  readonly oldRev: string | undefined;
  /** The commit after (GitHub pins). */
  readonly newRev: string | undefined;
  /** nix32 hash before. */
  readonly oldSha256: string;
  /** nix32 hash after. */
  readonly newSha256: string;
  /** The pin after the update. */
  readonly pin: Pin;
}

/** What {@link updatePins} did. */
export interface UpdatePinsResult {
  /** One entry per pin considered, in name order. */
  readonly updates: readonly PinUpdate[];
  /** Whether pins.json and pins.nix were rewritten (only when something changed). */
  readonly written: boolean;
}

function selectNames(file: PinsFile, names: readonly string[] | undefined, jsonFile: string): string[] {
  const all = sortedPinNames(file);
  if (names === undefined || names.length === 0) return all;
  for (const name of names) {
    if (file.pins[name] === undefined) {
      throw pinError('PIDEPLOY_PIN_UNKNOWN', `there is no pin '${name}' in ${jsonFile}`, all.length === 0 ? 'add one with `pideploy pin add`' : `pins: ${all.join(', ')}`);
    }
  }
  return [...new Set(names)].sort((left, right) => (left < right ? -1 : left > right ? 1 : 0));
}

/**
 * Moves pins forward: GitHub pins that follow a branch or tag are resolved again (a new commit
 * is downloaded and hashed; the same commit needs no download), URL pins are downloaded and
 * hashed again, pins of a fixed commit stay. Rewrites the files only when something changed,
 * and only after every pin succeeded.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_UNKNOWN`, the resolve/download codes.
 */
export async function updatePins(input: UpdatePinsInput, context: PideployContext): Promise<UpdatePinsResult> {
  const location = pinsLocation(input.dir);
  const file = await readExistingPinsFile(location);
  const names = selectNames(file, input.names, location.jsonFile);
  const options = resolveOptions(input);
  const pins: Record<string, Pin> = { ...file.pins };
  const updates: PinUpdate[] = [];
  for (const name of names) {
    const old = file.pins[name] as Pin;
    let next: Pin = old;
    if (old.type === 'url') {
      await ensureTempDir(options);
      const hashed = await hashUrl(old.url, 'fetchTarball', false, options, context);
      next = { type: 'url', ...lockedFields(old.url, hashed.narHash) };
    } else if (old.branch !== undefined || old.tag !== undefined) {
      const ref: GithubRef = old.branch !== undefined ? { kind: 'branch', name: old.branch } : { kind: 'tag', name: old.tag as string };
      const endpoints = githubEndpointsFromEnv(options.env);
      const token = options.env['GITHUB_TOKEN'];
      const resolved = await resolveGithubRev({ repository: old, ref, endpoints, token: token === '' ? undefined : token, retryPolicy: options.retryPolicy }, context);
      if (resolved.rev !== old.rev) {
        await ensureTempDir(options);
        const url = githubArchiveUrl(endpoints.archiveBase, old, resolved.rev);
        const hashed = await hashUrl(url, 'fetchTarball', true, options, context);
        next = orderPin({ ...old, rev: resolved.rev, ...lockedFields(url, hashed.narHash) });
      }
    }
    const changed = next.sha256 !== old.sha256 || next.url !== old.url || (next.type === 'github' && old.type === 'github' && next.rev !== old.rev);
    pins[name] = next;
    updates.push({
      name,
      changed,
      oldRev: old.type === 'github' ? old.rev : undefined,
      newRev: next.type === 'github' ? next.rev : undefined,
      oldSha256: old.sha256,
      newSha256: next.sha256,
      pin: next,
    });
  }
  const written = updates.some((update) => update.changed);
  if (written) await writePinsFiles(location, { version: 1, pins });
  return { updates, written };
}

/** Input of {@link removePins}. */
export interface RemovePinsInput {
  /** The directory of pins.json / pins.nix. */
  readonly dir: string;
  /** The pins to remove (at least one). */
  readonly names: readonly string[];
}

/** What {@link removePins} did. */
export interface RemovePinsResult {
  readonly jsonFile: string;
  readonly nixFile: string;
  /** The pins removed, sorted, as the lock had them. */
  readonly removed: readonly { readonly name: string; readonly pin: Pin }[];
}

/**
 * Removes pins from pins.json and pins.nix (both rewritten atomically, no network): all of them,
 * or, when one is not there, none.
 * @throws PideployError `PIDEPLOY_USAGE` (no name), `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_UNKNOWN`, `PIDEPLOY_PIN_WRITE_FAILED`.
 */
export async function removePins(input: RemovePinsInput, _context?: PideployContext): Promise<RemovePinsResult> {
  if (input.names.length === 0) throw usageError('name the pins to remove', 'pideploy pin remove nixpkgs-next');
  const location = pinsLocation(input.dir);
  const file = await readExistingPinsFile(location);
  const names = selectNames(file, input.names, location.jsonFile);
  const pins: Record<string, Pin> = { ...file.pins };
  for (const name of names) delete pins[name];
  await writePinsFiles(location, { ...file, pins });
  return { jsonFile: location.jsonFile, nixFile: location.nixFile, removed: names.map((name) => ({ name, pin: file.pins[name] as Pin })) };
}

/** Input of {@link verifyPins}. */
export interface VerifyPinsInput extends PinNetworkOptions {
  /** The directory of pins.json / pins.nix. */
  readonly dir: string;
  /** Pins to verify (default: all). */
  readonly names?: readonly string[] | undefined;
}

/** One pin's verification. */
export interface PinVerification {
  /** The pin's name. */
  readonly name: string;
  /** The URL that was downloaded again. */
  readonly url: string;
  /** True when the download hashes to the lock's sha256 and the lock is self-consistent. */
  readonly ok: boolean;
  /** The lock's hash as Nix prints it: `sha256:<nix32>`. */
  readonly specified: string;
  /** The downloaded source's hash: `sha256:<nix32>`. */
  readonly got: string;
  /** Problems found (empty when ok), e.g. the narHash or storePath disagreeing with sha256. */
  readonly problems: readonly string[];
}

/** What {@link verifyPins} found. */
export interface VerifyPinsResult {
  /** True when every pin verified. */
  readonly ok: boolean;
  /** One entry per pin, in name order. */
  readonly results: readonly PinVerification[];
}

/**
 * Downloads every (or the named) pin again, bypassing the cache, and compares its NAR hash with
 * pins.json (also checks that `narHash` and `storePath` agree with `sha256`). Never writes.
 * A mismatch is reported in the result (Nix-style `specified:` / `got:`), not thrown.
 * @throws PideployError `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_UNKNOWN`, the download codes.
 */
export async function verifyPins(input: VerifyPinsInput, context: PideployContext): Promise<VerifyPinsResult> {
  const location = pinsLocation(input.dir);
  const file = await readExistingPinsFile(location);
  const names = selectNames(file, input.names, location.jsonFile);
  const options = resolveOptions(input);
  await ensureTempDir(options);
  const results: PinVerification[] = [];
  for (const name of names) {
    const pin = file.pins[name] as Pin;
    context.reporter.emit({ type: 'log', level: 'info', message: `verifying ${name}: downloading ${pin.url}` });
    const result = await hashTarballUrl(
      pin.url,
      { topLevelRule: 'fetchTarball', retryPolicy: options.retryPolicy, tempDirectory: pinCacheLayout(options.cacheDir).temp, onProgress: options.onDownloadProgress },
      context,
    );
    const specifiedDigest = parseHash(pin.sha256, { expectedAlgorithm: 'sha256' }).digest;
    const problems: string[] = [];
    if (!specifiedDigest.equals(result.narHash)) problems.push('the downloaded source has a different hash');
    if (!parseHash(pin.narHash, { expectedAlgorithm: 'sha256' }).digest.equals(specifiedDigest)) problems.push('narHash does not match sha256');
    if (makeFixedOutputPath({ name: 'source', recursive: true, narHash: specifiedDigest }) !== pin.storePath) problems.push('storePath does not match sha256');
    results.push({
      name,
      url: pin.url,
      ok: problems.length === 0,
      specified: `sha256:${pinNixHash(pin)}`,
      got: `sha256:${formatHash(result.narHash, 'nix32')}`,
      problems,
    });
  }
  return { ok: results.every((result) => result.ok), results };
}

/** Input of {@link showPins}. */
export interface ShowPinsInput {
  /** The directory of pins.json / pins.nix. */
  readonly dir: string;
}

/** What {@link showPins} returns. */
export interface ShowPinsResult {
  /** pins.json path. */
  readonly jsonFile: string;
  /** pins.nix path. */
  readonly nixFile: string;
  /** The lock's contents. */
  readonly file: PinsFile;
}

/**
 * Reads pins.json (no network).
 * @throws PideployError `PIDEPLOY_PIN_LOCK_MISSING`, `PIDEPLOY_PIN_LOCK_INVALID`.
 */
export async function showPins(input: ShowPinsInput, _context?: PideployContext): Promise<ShowPinsResult> {
  const location = pinsLocation(input.dir);
  return { jsonFile: location.jsonFile, nixFile: location.nixFile, file: await readExistingPinsFile(location) };
}

/** Input of {@link hashSource}. */
export interface HashSourceInput extends PinNetworkOptions {
  /** A directory, a local tarball (`.tar.gz`, `.tar`), or an http/https/file URL of a tarball. */
  readonly source: string;
  /** Print SRI (`sha256-…=`) instead of nix32. */
  readonly sri?: boolean | undefined;
  /** Relative paths are resolved against this (default `process.cwd()`). */
  readonly cwd?: string | undefined;
}

/** What {@link hashSource} computed. */
export interface HashSourceResult {
  /** What was hashed. */
  readonly source: string;
  /** `directory` (NAR of the tree), `tarball` (a local file) or `url`. */
  readonly kind: 'directory' | 'tarball' | 'url';
  /** The hash as requested: nix32 (like `nix-prefetch-url --unpack`) or SRI. */
  readonly hash: string;
  /** NAR sha256, nix32. */
  readonly sha256: string;
  /** NAR sha256, SRI. */
  readonly narHash: string;
  /** NAR size in bytes. */
  readonly narSize: number;
  /** The store path `builtins.fetchTarball { sha256; }` (name `source`) would give. */
  readonly storePath: string;
}

/**
 * The NAR sha256 of a directory (what `nix-hash --type sha256 --base32 DIR` prints) or of a
 * tarball, local or at a URL (what `nix-prefetch-url --unpack URL` prints: the single top-level
 * entry, or the whole unpack directory when there are several). No cache is used.
 * @throws PideployError `PIDEPLOY_PIN_NOT_FOUND`, the download codes, `PIDEPLOY_ARCHIVE_*`, `PIDEPLOY_NAR_*`.
 */
export async function hashSource(input: HashSourceInput, context: PideployContext): Promise<HashSourceResult> {
  const options = resolveOptions(input);
  let kind: HashSourceResult['kind'];
  let narHash: Buffer;
  let narSize: number;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//u.test(input.source)) {
    const url = validateSourceUrl(input.source);
    await ensureTempDir(options);
    const result = await hashTarballUrl(
      url,
      { topLevelRule: 'nix-prefetch-url', retryPolicy: options.retryPolicy, tempDirectory: pinCacheLayout(options.cacheDir).temp, onProgress: options.onDownloadProgress },
      context,
    );
    ({ narHash, narSize } = result);
    kind = 'url';
  } else {
    const file = path.resolve(input.cwd ?? process.cwd(), input.source);
    let isDirectory: boolean;
    try {
      isDirectory = (await stat(file)).isDirectory();
    } catch (error) {
      throw pinError('PIDEPLOY_PIN_NOT_FOUND', `cannot read ${input.source}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'give a directory, a .tar.gz file or a URL', { cause: error });
    }
    if (isDirectory) {
      ({ narHash, narSize } = await hashPathNar(file));
      kind = 'directory';
    } else {
      await ensureTempDir(options);
      ({ narHash, narSize } = await hashTarballFile(
        file,
        { topLevelRule: 'nix-prefetch-url', retryPolicy: options.retryPolicy, tempDirectory: pinCacheLayout(options.cacheDir).temp, onProgress: options.onDownloadProgress },
        context,
      ));
      kind = 'tarball';
    }
  }
  const locked = lockedFields(input.source, narHash);
  return {
    source: input.source,
    kind,
    hash: input.sri === true ? locked.narHash : locked.sha256,
    sha256: locked.sha256,
    narHash: locked.narHash,
    narSize,
    storePath: locked.storePath,
  };
}
