import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PideployError, type PideployContext } from '@pideploy/core';
import { ensureStateDir, type StorePathInfo } from '@pideploy/nix';
import { generateCacheKey, pushToBinaryCache, serveBinaryCache, type BinaryCacheServer, type PushToBinaryCacheResult } from '@pideploy/transport';
import type { FleetCacheSettings } from './config.js';

/** The fleet cache of one deploy: push (once per path), the URL hosts substitute from, the key they trust. */
export interface FleetCache {
  /**
   * Pushes the closures of `paths` (what the cache lacks only); pushes run one at a time.
   * `closure`: their path infos when the caller has them (else asked from the local store).
   */
  push(paths: readonly string[], closure: readonly StorePathInfo[] | undefined, context: PideployContext): Promise<PushToBinaryCacheResult>;
  /** The cache URL: this machine's server (reached through each host's SSH tunnel) or the configured one. */
  readonly url: string;
  /** True when hosts reach {@link FleetCache.url} through their SSH connection (`ssh -R`). */
  readonly tunnel: boolean;
  /** Stops the local server, if one runs. */
  close(): Promise<void>;
}

/** The default name of the key pideploy makes: `pideploy-<this machine>-1`, reduced to the allowed characters. */
export function defaultCacheKeyName(hostname: string = os.hostname()): string {
  const cleaned = hostname.replace(/[^A-Za-z0-9._+-]/gu, '-').replace(/^[^A-Za-z0-9]+/u, '');
  return `pideploy-${cleaned === '' ? 'deployer' : cleaned}-1`;
}

/**
 * Opens the fleet cache for a deploy: the signing key (the configured one, else the one in
 * `<stateDir>/cache-key/`, made on first use and reused afterwards), and, unless the hosts reach
 * the cache by URL themselves, a loopback HTTP server for the cache directory that each host
 * reaches through its own SSH connection.
 */
export async function openFleetCache(
  settings: FleetCacheSettings,
  stateDir: string,
  env: NodeJS.ProcessEnv,
  context: PideployContext,
): Promise<FleetCache> {
  let secretKeyFile = settings.secretKeyFile;
  if (secretKeyFile === undefined) {
    const name = settings.keyName ?? defaultCacheKeyName();
    const directory = await ensureStateDir(stateDir, 'cache-key');
    const existing = path.join(directory, `${name}.secret`);
    secretKeyFile = existsSync(existing) ? existing : (await generateCacheKey({ name, directory, localNixEnv: env }, context)).secretKeyFile;
  } else {
    // Fail now, not after the build, when the configured key cannot be read.
    const configured = secretKeyFile;
    await readFile(configured).catch((error: NodeJS.ErrnoException) => {
      throw new PideployError({
        code: 'PIDEPLOY_CACHE_KEY_UNREADABLE',
        message: `cannot read the cache signing key ${configured}: ${error.code ?? error.message}`,
        hint: 'fix cache.secretKeyFile in pideploy.json, or remove it and pideploy makes a key in .pideploy/cache-key/',
      });
    });
  }
  await mkdir(settings.directory, { recursive: true });
  const server: BinaryCacheServer | undefined = settings.url === undefined ? await serveBinaryCache({ directory: settings.directory }) : undefined;
  let queue: Promise<unknown> = Promise.resolve();
  return {
    url: server?.url ?? (settings.url as string),
    tunnel: server !== undefined,
    push: (paths, closure, pushContext) => {
      const pushed = queue.then(() =>
        pushToBinaryCache({ paths, closure, cacheDirectory: settings.directory, secretKeyFile, compression: settings.compression, localNixEnv: env }, pushContext),
      );
      queue = pushed.catch(() => undefined);
      return pushed;
    },
    close: async () => {
      await server?.close();
    },
  };
}
