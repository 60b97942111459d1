import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { PideployError, type PideployContext } from '@pideploy/core';
import { queryClosurePathInfos, runProcess, type StorePathInfo } from '@pideploy/nix';
import { binaryCacheStoreUrl, planCachePush, type CacheCompression } from './binary-cache-plan.js';
import { hasValidSignature, narInfoFileName, parseCachePublicKey, parseNarInfo, publicKeyOfSecretKey, type NarInfo } from './narinfo.js';

/** Input of {@link generateCacheKey}. */
export interface GenerateCacheKeyInput {
  /**
   * The key's name, written before every signature and listed in the hosts' trusted keys
   * (convention: `<deployer host>-<n>`, e.g. `build-box-1`). Letters, digits and `._+-` only.
   */
  readonly name: string;
  /** Directory for `<name>.secret` (mode 0600) and `<name>.public`; created (0700) if missing. */
  readonly directory: string;
  /** Environment for the local nix (default this process's). */
  readonly localNixEnv?: NodeJS.ProcessEnv | undefined;
}

/** A binary-cache signing key pair on disk. */
export interface CacheKey {
  /** The key's name. */
  readonly name: string;
  /** The secret key file (never read into events, logs or errors). */
  readonly secretKeyFile: string;
  /** The public key file. */
  readonly publicKeyFile: string;
  /** The public key, `name:base64`: what hosts trust (`substituteFromCache({ publicKey })`). */
  readonly publicKey: string;
}

/**
 * Creates a signing key pair with the local Nix (`nix-store --generate-binary-cache-key`). Never
 * overwrites: existing key files are an error (use them instead).
 * @throws PideployError `PIDEPLOY_CACHE_KEY_EXISTS`, `PIDEPLOY_USAGE` (bad name),
 *   `PIDEPLOY_MISSING_TOOL` / `PIDEPLOY_COMMAND_FAILED` from nix-store.
 */
export async function generateCacheKey(input: GenerateCacheKeyInput, context?: PideployContext): Promise<CacheKey> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/u.test(input.name)) {
    throw new PideployError({
      code: 'PIDEPLOY_USAGE',
      message: `"${input.name}" cannot name a binary cache key`,
      hint: 'use letters, digits and . _ + - (for example deployer-1)',
    });
  }
  const directory = path.resolve(input.directory);
  const secretKeyFile = path.join(directory, `${input.name}.secret`);
  const publicKeyFile = path.join(directory, `${input.name}.public`);
  for (const file of [secretKeyFile, publicKeyFile]) {
    if (await exists(file)) {
      throw new PideployError({
        code: 'PIDEPLOY_CACHE_KEY_EXISTS',
        message: `${file} already exists; a cache key is never overwritten`,
        hint: 'use the existing key files, or pick another name or directory',
      });
    }
  }
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await runProcess(['nix-store', '--generate-binary-cache-key', input.name, secretKeyFile, publicKeyFile], {
    env: input.localNixEnv,
    signal: context?.signal,
    failureMessage: 'nix-store --generate-binary-cache-key failed',
    failureHint: 'check that the directory is writable',
  });
  await chmod(secretKeyFile, 0o600);
  const publicKey = (await readFile(publicKeyFile, 'utf8')).trim();
  parseCachePublicKey(publicKey);
  return { name: input.name, secretKeyFile, publicKeyFile, publicKey };
}

/** Input of {@link pushToBinaryCache}. */
export interface PushToBinaryCacheInput {
  /** Store paths (or symlinks to them) whose closures to push. */
  readonly paths: readonly string[];
  /** The binary cache directory (a Nix `file://` cache); created if missing. */
  readonly cacheDirectory: string;
  /** The secret key that signs every narinfo written (see {@link generateCacheKey}). */
  readonly secretKeyFile: string;
  /** NAR compression (default zstd; see `DEFAULT_CACHE_COMPRESSION`). Paths already there keep theirs. */
  readonly compression?: CacheCompression | undefined;
  /** Path infos of the whole closure when the caller has them; default: asked from the local store. */
  readonly closure?: readonly StorePathInfo[] | undefined;
  /** Environment for the local nix (default this process's). */
  readonly localNixEnv?: NodeJS.ProcessEnv | undefined;
}

/** What {@link pushToBinaryCache} did. */
export interface PushToBinaryCacheResult {
  /** Format version of this result (JSON artifact). */
  readonly version: 1;
  /** The absolute cache directory. */
  readonly cacheDirectory: string;
  /** The public key of the signing key (`name:base64`), for the hosts. */
  readonly publicKey: string;
  /** Paths newly written, dependencies first. */
  readonly pathsPushed: readonly string[];
  /** Closure paths the cache already had (re-signed if they lacked this key's signature). */
  readonly pathsPresent: readonly string[];
  /** Present paths that had no signature of this key and were signed now. */
  readonly pathsResigned: readonly string[];
  /** Σ NAR size of the pushed paths (uncompressed). */
  readonly narBytesPushed: number;
  /** Bytes of the compressed NAR files written (what hosts download for them). */
  readonly fileBytesPushed: number;
  /** The whole closure with its path infos (hand it to `substituteFromCache` to skip a query). */
  readonly closure: readonly StorePathInfo[];
  /** Wall time of the whole call, milliseconds. */
  readonly durationMs: number;
}

/**
 * Pushes the closure of `paths` into a signed Nix binary cache directory, once for the whole
 * fleet: `nix copy --to 'file://DIR?compression=…&secret-key=…'` writes each missing path as a
 * compressed NAR and a narinfo signed with the key. Paths already in the cache are not written
 * again; those lacking this key's signature (a cache reused after a key change) are signed
 * (`nix store sign`). Every narinfo of the closure then carries a valid signature of the key
 * (those written or signed now are read back to check). Emits `cache-push`.
 * @throws PideployError `PIDEPLOY_CACHE_KEY_INVALID` (unreadable or foreign key file),
 *   `PIDEPLOY_CACHE_PUSH_FAILED`, `PIDEPLOY_STORE_PATH_NOT_VALID`, `PIDEPLOY_INTERRUPTED`.
 */
export async function pushToBinaryCache(input: PushToBinaryCacheInput, context: PideployContext): Promise<PushToBinaryCacheResult> {
  const startedAt = performance.now();
  const cacheDirectory = path.resolve(input.cacheDirectory);
  const secretKeyFile = path.resolve(input.secretKeyFile);
  const storeUrl = binaryCacheStoreUrl({ directory: cacheDirectory, secretKeyFile, compression: input.compression });
  const publicKey = parseCachePublicKey(publicKeyOfSecretKey(await readSecretKey(secretKeyFile)));
  const closure = input.closure ?? (await queryClosurePathInfos(input.paths, { env: input.localNixEnv, signal: context.signal }));

  const before = await readNarInfos(cacheDirectory, closure.map((info) => info.path));
  const plan = planCachePush(closure, before.keys());
  const unsigned = plan.present.filter((storePath) => !hasValidSignature(before.get(storePath) as NarInfo, [publicKey]));
  await mkdir(cacheDirectory, { recursive: true });
  const nix = (argv: readonly string[], what: string) =>
    runProcess(['nix', '--extra-experimental-features', 'nix-command', ...argv], {
      env: input.localNixEnv,
      signal: context.signal,
      failureMessage: `${what} failed`,
      failureHint: 'check that the cache directory is writable and the paths are valid in the local store',
    }).catch((error: unknown) => {
      if (PideployError.isInstance(error) && error.code === 'PIDEPLOY_COMMAND_FAILED') {
        throw new PideployError({ code: 'PIDEPLOY_CACHE_PUSH_FAILED', message: error.message, hint: error.hint, cause: error, commandFailure: error.commandFailure });
      }
      throw error;
    });
  if (plan.toPush.length > 0) await nix(['copy', '--to', storeUrl, '--', ...plan.toPush.map((info) => info.path)], `nix copy to ${cacheDirectory}`);
  if (unsigned.length > 0) await nix(['store', 'sign', '--store', `file://${cacheDirectory}`, '--key-file', secretKeyFile, '--', ...unsigned], `nix store sign in ${cacheDirectory}`);

  // Only what this push wrote or re-signed is read again: the rest was checked in `before`.
  const rewritten = await readNarInfos(cacheDirectory, [...plan.toPush.map((info) => info.path), ...unsigned]);
  const after = new Map([...before, ...rewritten]);
  const bad = closure.filter((info) => {
    const narinfo = after.get(info.path);
    return narinfo === undefined || !hasValidSignature(narinfo, [publicKey]);
  });
  if (bad.length > 0) {
    throw new PideployError({
      code: 'PIDEPLOY_CACHE_PUSH_FAILED',
      message: `after the push, ${bad.length} path(s) of the closure have no narinfo signed by ${publicKey.name} in ${cacheDirectory} (first: ${bad[0]?.path})`,
      hint: 'another process may be writing the same cache directory; push again',
    });
  }
  const fileBytesPushed = plan.toPush.reduce((sum, info) => sum + (after.get(info.path)?.fileSize ?? 0), 0);
  const durationMs = Math.round(performance.now() - startedAt);
  context.reporter.emit({
    type: 'cache-push',
    cache: cacheDirectory,
    pathsPushed: plan.toPush.length,
    pathsPresent: plan.present.length,
    narBytesPushed: plan.narBytesToPush,
    fileBytesPushed,
    durationMs,
  });
  return {
    version: 1,
    cacheDirectory,
    publicKey: `${publicKey.name}:${publicKey.key.toString('base64')}`,
    pathsPushed: plan.toPush.map((info) => info.path),
    pathsPresent: plan.present,
    pathsResigned: unsigned,
    narBytesPushed: plan.narBytesToPush,
    fileBytesPushed,
    closure,
    durationMs,
  };
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

async function readSecretKey(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new PideployError({
      code: 'PIDEPLOY_CACHE_KEY_INVALID',
      message: `cannot read the cache's secret key file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
      hint: 'create a key with generateCacheKey, and check the file’s permissions',
      cause: error,
    });
  }
}

/** The narinfos the cache has for `paths`, by store path (missing ones are absent). */
async function readNarInfos(cacheDirectory: string, paths: readonly string[]): Promise<Map<string, NarInfo>> {
  const found = new Map<string, NarInfo>();
  const readOne = async (storePath: string) => {
    let text: string;
    try {
      text = await readFile(path.join(cacheDirectory, narInfoFileName(storePath)), 'utf8');
    } catch {
      return;
    }
    const narinfo = parseNarInfo(text);
    if (narinfo.storePath === storePath) found.set(storePath, narinfo);
  };
  // A bounded number of files open at once (a system closure has thousands of paths).
  for (let start = 0; start < paths.length; start += 64) await Promise.all(paths.slice(start, start + 64).map(readOne));
  return found;
}
