import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import type { TarballTopLevelRule } from '@pideploy/nix';

/*
 * The hash cache: what a URL hashed to, keyed by URL + top-level rule. It is consulted only for
 * URLs whose contents cannot change (GitHub archives of a full commit SHA), or when the caller
 * knows the hash to expect, so a hit never hides a change; `verify` never consults it.
 */

/** The cache directory: `$XDG_CACHE_HOME/pideploy`, else `~/.cache/pideploy`. */
export function defaultCacheDir(env: Readonly<Record<string, string | undefined>>): string {
  const xdg = env['XDG_CACHE_HOME'];
  if (xdg !== undefined && xdg !== '' && path.isAbsolute(xdg)) return path.join(xdg, 'pideploy');
  const home = env['HOME'] !== undefined && env['HOME'] !== '' ? env['HOME'] : homedir();
  return path.join(home, '.cache', 'pideploy');
}

/** One cached result. */
export interface CachedHash {
  /** Format version (1). */
  readonly version: 1;
  /** The URL that was downloaded. */
  readonly url: string;
  /** The top-level rule it was hashed with. */
  readonly rule: TarballTopLevelRule;
  /** NAR sha256, nix32. */
  readonly sha256: string;
  /** NAR sha256, SRI. */
  readonly narHash: string;
  /** NAR size in bytes. */
  readonly narSize: number;
}

/** The file name of a cache entry (pure): sha256 of rule and URL. */
export function hashCacheKey(url: string, rule: TarballTopLevelRule): string {
  return createHash('sha256').update(`${rule}\0${url}`).digest('hex');
}

/** Where pin keeps its files inside the cache directory. */
export function pinCacheLayout(cacheDir: string): { readonly hashes: string; readonly temp: string } {
  return { hashes: path.join(cacheDir, 'pin', 'hashes'), temp: path.join(cacheDir, 'pin', 'tmp') };
}

/** Reads a cache entry; undefined when absent, unreadable, or (with `expectedSha256`) different. */
export async function readCachedHash(cacheDir: string, url: string, rule: TarballTopLevelRule, expectedSha256?: string): Promise<CachedHash | undefined> {
  try {
    const entry = JSON.parse(await readFile(path.join(pinCacheLayout(cacheDir).hashes, `${hashCacheKey(url, rule)}.json`), 'utf8')) as CachedHash;
    if (entry.version !== 1 || entry.url !== url || entry.rule !== rule || typeof entry.sha256 !== 'string' || typeof entry.narHash !== 'string') return undefined;
    if (expectedSha256 !== undefined && entry.sha256 !== expectedSha256) return undefined;
    return entry;
  } catch {
    return undefined;
  }
}

/** Stores a cache entry (atomically; failures are ignored: the cache is only an optimisation). */
export async function writeCachedHash(cacheDir: string, entry: CachedHash): Promise<void> {
  const dir = pinCacheLayout(cacheDir).hashes;
  const file = path.join(dir, `${hashCacheKey(entry.url, entry.rule)}.json`);
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(temp, `${JSON.stringify(entry)}\n`);
    await rename(temp, file);
  } catch {
    await rm(temp, { force: true }).catch(() => undefined);
  }
}
