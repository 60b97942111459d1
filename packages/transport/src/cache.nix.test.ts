import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createBaseContext, createCollectingReporter } from '@pideploy/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateCacheKey, pushToBinaryCache, type CacheKey } from './cache-push.js';
import { serveBinaryCache, type BinaryCacheServer, type CacheRequest } from './cache-server.js';
import { substituteFromCache } from './cache-substitute.js';
import { hasValidSignature, narInfoFileName, parseCachePublicKey, parseNarInfo, publicKeyOfSecretKey } from './narinfo.js';
import { describeNix, LOCAL_NIX_ENV, localSpawner } from './test-support/local-serve.js';

/*
 * The fleet cache against the real Nix 2.8 on this machine, without the lab: keys from
 * nix-store, pushes with nix copy, the HTTP server, and substitution into fresh chroot stores
 * (`nix-store --realise --store DIR`) reaching the server directly (no tunnel).
 */


describeNix('fleet cache with the local Nix (push, serve, substitute into chroot stores)', () => {
  let work: string;
  let env: NodeJS.ProcessEnv;
  let key: CacheKey;
  let cache: string;
  let top: string;
  let closure: string[];
  let server: BinaryCacheServer;
  const requests: CacheRequest[] = [];

  const validIn = (store: string, paths: readonly string[]) =>
    paths.map((storePath) => {
      try {
        execFileSync('nix-store', ['--store', store, '--check-validity', storePath], { env, stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    });

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'pideploy-cache-'));
    env = { ...LOCAL_NIX_ENV, XDG_CACHE_HOME: path.join(work, 'xdg') };
    cache = path.join(work, 'cache');
    top = execFileSync(
      'nix-build',
      [
        '--no-out-link',
        '-E',
        `let dep = n: builtins.derivation { name = "cache-test-dep-\${n}"; system = "x86_64-linux"; builder = "/bin/sh"; salt = "${path.basename(work)}"; args = ["-c" "echo \${n} > $out"]; };
         in builtins.derivation { name = "cache-test-top"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; a = dep "a"; b = dep "b";
              args = ["-c" "mkdir $out; echo $a $b > $out/refs; head -c 200000 /dev/urandom > $out/blob"]; }`,
      ],
      { env, encoding: 'utf8' },
    ).trim();
    closure = execFileSync('nix-store', ['--query', '--requisites', top], { env, encoding: 'utf8' }).trim().split('\n');
  });
  afterAll(async () => {
    await server?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('generateCacheKey: a Nix key pair whose public half is what pideploy derives from the secret; never overwritten', async () => {
    key = await generateCacheKey({ name: 'pideploy-nix-test-1', directory: path.join(work, 'keys'), localNixEnv: env });
    expect(key.publicKey).toMatch(/^pideploy-nix-test-1:[A-Za-z0-9+/]{43}=$/u);
    expect(publicKeyOfSecretKey(readFileSync(key.secretKeyFile, 'utf8'))).toBe(key.publicKey);
    expect(execFileSync('stat', ['-c', '%a', key.secretKeyFile], { encoding: 'utf8' }).trim()).toBe('600');
    await expect(generateCacheKey({ name: 'pideploy-nix-test-1', directory: path.join(work, 'keys'), localNixEnv: env })).rejects.toMatchObject({ code: 'PIDEPLOY_CACHE_KEY_EXISTS' });
    await expect(generateCacheKey({ name: 'bad:name', directory: work })).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE' });
  });

  it('pushToBinaryCache: writes every closure path once, signed; a second push writes nothing', async () => {
    const reporter = createCollectingReporter();
    const first = await pushToBinaryCache({ paths: [top], cacheDirectory: cache, secretKeyFile: key.secretKeyFile, localNixEnv: env }, createBaseContext({ reporter }));
    expect(first.pathsPushed).toHaveLength(closure.length);
    expect(first.pathsPushed.at(-1)).toBe(top);
    expect(first.pathsPresent).toEqual([]);
    expect(first.publicKey).toBe(key.publicKey);
    expect(first.narBytesPushed).toBeGreaterThan(200_000);
    expect(first.fileBytesPushed).toBeGreaterThan(200_000); // random bytes do not compress
    expect(readdirSync(path.join(cache, 'nar')).every((file) => file.endsWith('.nar.zst'))).toBe(true);
    for (const storePath of closure) {
      const narinfo = parseNarInfo(readFileSync(path.join(cache, narInfoFileName(storePath)), 'utf8'));
      expect(narinfo.compression).toBe('zstd');
      expect(hasValidSignature(narinfo, [parseCachePublicKey(key.publicKey)])).toBe(true);
    }
    expect(reporter.events).toEqual([expect.objectContaining({ type: 'cache-push', cache, pathsPushed: closure.length, pathsPresent: 0 })]);

    const again = await pushToBinaryCache({ paths: [top], cacheDirectory: cache, secretKeyFile: key.secretKeyFile, localNixEnv: env }, createBaseContext());
    expect(again).toMatchObject({ pathsPushed: [], narBytesPushed: 0, fileBytesPushed: 0, pathsResigned: [] });
    expect(again.pathsPresent).toHaveLength(closure.length);
  });

  it('substituteFromCache (direct URL): the store gets the closure over HTTP; a second run asks nothing', async () => {
    server = await serveBinaryCache({ directory: cache, onRequest: (entry) => requests.push(entry) });
    const store = path.join(work, 'store-1');
    const session = localSpawner(env);
    const reporter = createCollectingReporter();
    const result = await substituteFromCache(
      { host: 'chroot-1', session, paths: [top], cacheUrl: server.url, tunnel: false, publicKey: key.publicKey, remoteStore: store, localNixEnv: env },
      createBaseContext({ reporter }),
    );
    expect(result.pathsFetched).toHaveLength(closure.length);
    expect(result).toMatchObject({ pathsPresent: [], cacheUrlOnHost: server.url, tunnelBytes: 0 });
    expect(validIn(store, closure)).toEqual(closure.map(() => true));
    const narinfoGets = requests.filter((entry) => entry.path.endsWith('.narinfo') && entry.status === 200);
    expect(new Set(narinfoGets.map((entry) => entry.path)).size).toBe(closure.length);
    expect(requests.filter((entry) => entry.path.includes('/nar/'))).toHaveLength(closure.length);
    expect(reporter.events.map((event) => event.type)).toEqual(['copy-plan', ...closure.map(() => 'copy-progress'), 'copy-end']);

    const before = requests.length;
    const again = await substituteFromCache(
      { host: 'chroot-1', session, paths: [top], cacheUrl: server.url, tunnel: false, publicKey: key.publicKey, remoteStore: store, localNixEnv: env },
      createBaseContext(),
    );
    expect(again).toMatchObject({ pathsFetched: [], narBytesFetched: 0 });
    expect(again.pathsPresent).toHaveLength(closure.length);
    expect(requests.length).toBe(before);
    // Only the validity query ran the second time: no nix-store --realise.
    expect(session.commands.filter((argv) => argv.includes('--realise'))).toHaveLength(1);
  });

  it('a key the cache is not signed with is refused by Nix, and nothing is imported', async () => {
    const other = await generateCacheKey({ name: 'pideploy-nix-test-other', directory: path.join(work, 'keys'), localNixEnv: env });
    const store = path.join(work, 'store-2');
    const failure = await substituteFromCache(
      { host: 'chroot-2', session: localSpawner(env), paths: [top], cacheUrl: server.url, tunnel: false, publicKey: other.publicKey, remoteStore: store, localNixEnv: env },
      createBaseContext(),
    ).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_CACHE_SIGNATURE_UNTRUSTED', message: expect.stringContaining('pideploy-nix-test-other') });
    expect(validIn(store, closure)).toEqual(closure.map(() => false));
  });

  it('pushing with a new key re-signs what the cache already has, so hosts trusting only the new key accept it', async () => {
    const rotated = await generateCacheKey({ name: 'pideploy-nix-test-2', directory: path.join(work, 'keys'), localNixEnv: env });
    const result = await pushToBinaryCache({ paths: [top], cacheDirectory: cache, secretKeyFile: rotated.secretKeyFile, localNixEnv: env }, createBaseContext());
    expect(result.pathsPushed).toEqual([]);
    expect([...result.pathsResigned].sort()).toEqual([...closure].sort());
    // The next deploy serves the cache again: a new server, so a new URL, so Nix does not reuse
    // the narinfos (with only the old signature) it remembered from the first server's URL.
    await using next = await serveBinaryCache({ directory: cache });
    const store = path.join(work, 'store-3');
    const fetched = await substituteFromCache(
      { host: 'chroot-3', session: localSpawner(env), paths: [top], cacheUrl: next.url, tunnel: false, publicKey: rotated.publicKey, remoteStore: store, localNixEnv: env },
      createBaseContext(),
    );
    expect(fetched.pathsFetched).toHaveLength(closure.length);
    expect(validIn(store, [top])).toEqual([true]);
  });
});
