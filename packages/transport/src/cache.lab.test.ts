import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter, type DeployEvent } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labDown, labExec, labStatus, labUp, planLabHost, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount } from '@pideploy/lab/testing';
import { queryClosurePathInfos } from '@pideploy/nix';
import { connectSsh, createSudo, type CreateSudoOptions } from '@pideploy/ssh';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { generateCacheKey, pushToBinaryCache, type CacheKey, type PushToBinaryCacheResult } from './cache-push.js';
import { serveBinaryCache, type BinaryCacheServer, type CacheRequest } from './cache-server.js';
import { substituteFromCache, type SubstituteFromCacheInput } from './cache-substitute.js';
import { narInfoFileName, parseNarInfo } from './narinfo.js';
import type { StoreAccess } from './remote-serve.js';

/*
 * The fleet cache on lab hosts (real nix-daemon, sshd, sudo; each host its own store): the
 * closure is pushed ONCE into a signed file:// cache, served over loopback HTTP, and each host
 * substitutes it with its own Nix through an `ssh -R` tunnel over its one SSH session.
 * pi1: deploy is a trusted Nix user (direct); pi2: NOT trusted (sudo with the password);
 * pi3: trusted, NOPASSWD sudo (through sudo, no password).
 */

const run = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

describeLab('@pideploy/transport: fleet cache — push once, every host substitutes through its SSH session', () => {
  let lab: LabStatus;
  let hosts: readonly LabHostStatus[];
  let nixEnv: NodeJS.ProcessEnv;
  let work: string;
  let key: CacheKey;
  let pushed: PushToBinaryCacheResult;
  let server: BinaryCacheServer;
  let top: string;
  let closure: string[];
  const served: CacheRequest[] = [];
  // How each host becomes root (undefined: direct): the sudo runner is made on the test's session.
  const sudoOf: Record<string, CreateSudoOptions | undefined> = {
    pi1: undefined,
    pi2: { assumeMode: 'password', password: LAB_SUDO_PASSWORD },
    pi3: { assumeMode: 'nopasswd' },
  };

  const host = (name: string) => hosts.find((candidate) => candidate.name === name) as LabHostStatus;
  const logins = (name: string) => sshLoginCount(host(name));
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
  async function forget(name: string, paths: readonly string[]): Promise<void> {
    const result = await labExec(name, ['nix-store', '--delete', ...paths], { instance });
    expect(result.exitCode, result.stderr).toBe(0);
  }
  async function validOn(name: string, paths: readonly string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (const storePath of paths) out.push((await labExec(name, ['nix-store', '--check-validity', storePath], { instance })).exitCode === 0);
    return out;
  }
  /** One deploy-like run on one host: connect, substitute, close; the result, its events and its logins. */
  async function substituteOn(name: string, input: Partial<Omit<SubstituteFromCacheInput, 'session' | 'host' | 'access'>> & { sudo?: CreateSudoOptions | null } = {}) {
    const before = logins(name);
    const reporter = createCollectingReporter();
    await using session = await connectSsh(name, { sshConfigFile: lab.sshConfig, agent: false }, createBaseContext());
    const { sudo: sudoGiven, ...substituteInput } = input;
    const sudo = sudoGiven === undefined ? sudoOf[name] : (sudoGiven ?? undefined);
    const access: StoreAccess = sudo === undefined ? { mode: 'direct' } : { mode: 'sudo', runner: await createSudo(session, sudo) };
    const result = await substituteFromCache(
      { host: name, session, paths: [top], cacheUrl: server.url, publicKey: key.publicKey, access, closure: pushed.closure, ...substituteInput },
      createBaseContext({ reporter }),
    ).catch((error: unknown) => {
      throw Object.assign(error as Error, { events: reporter.events });
    });
    return { result, events: reporter.events, logins: async () => (await settle(), logins(name) - before) };
  }

  beforeAll(async () => {
    await labUp({ instance, hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { sudo: 'nopasswd' } } });
    lab = await labStatus({ instance });
    hosts = lab.hosts;
    nixEnv = { ...process.env, ...lab.env };
    work = mkdtempSync(path.join(tmpdir(), 'pideploy-fleet-cache-'));
    const salt = `${Date.now()}`;
    // 1 top + 20 small leaves + 1 MiB of text (compresses) + 1 MiB of random bytes (does not).
    const { stdout } = await run(
      'nix-build',
      [
        '--no-out-link',
        '-E',
        `let leaf = i: builtins.derivation { name = "cache-lab-leaf-\${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; salt = "${salt}"; args = ["-c" "echo leaf \${toString i} > $out"]; };
         in builtins.derivation { name = "cache-lab-top"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; leaves = map leaf (builtins.genList (i: i) 20);
              args = ["-c" "mkdir $out; echo $leaves > $out/leaves; seq 1 160000 > $out/text; head -c 1048576 /dev/urandom > $out/random"]; }`,
      ],
      { env: nixEnv, maxBuffer: 1 << 24 },
    );
    top = stdout.trim();
    closure = (await queryClosurePathInfos([top], { env: nixEnv })).map((info) => info.path);
    key = await generateCacheKey({ name: `pideploy-lab-${instance}-cache-1`, directory: path.join(work, 'keys'), localNixEnv: nixEnv });
    pushed = await pushToBinaryCache({ paths: [top], cacheDirectory: path.join(work, 'cache'), secretKeyFile: key.secretKeyFile, localNixEnv: nixEnv }, createBaseContext());
    server = await serveBinaryCache({ directory: pushed.cacheDirectory, onRequest: (request) => served.push(request) });
  });

  afterAll(async () => {
    await server?.close();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
    if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
  });

  it('the closure is pushed once: every path a signed narinfo and a zstd NAR; pushing again writes nothing', async () => {
    expect(pushed.pathsPushed).toHaveLength(closure.length);
    expect(pushed.pathsPushed.at(-1)).toBe(top);
    expect(pushed.fileBytesPushed).toBeLessThan(pushed.narBytesPushed); // the text part compresses
    for (const storePath of closure) {
      const narinfo = parseNarInfo(readFileSync(path.join(pushed.cacheDirectory, narInfoFileName(storePath)), 'utf8'));
      expect(narinfo.signatures).toEqual([expect.stringMatching(new RegExp(`^${key.name}:`, 'u'))]);
      expect(statSync(path.join(pushed.cacheDirectory, narinfo.url)).size).toBe(narinfo.fileSize);
    }
    const again = await pushToBinaryCache({ paths: [top], cacheDirectory: pushed.cacheDirectory, secretKeyFile: key.secretKeyFile, localNixEnv: nixEnv }, createBaseContext());
    expect(again).toMatchObject({ pathsPushed: [], narBytesPushed: 0 });
  });

  it('3 hosts (trusted, untrusted + sudo password, NOPASSWD sudo) substitute it in parallel through their one session', async () => {
    for (const { name } of hosts) await forget(name, closure);
    const before = served.length;
    const runs = await Promise.all(hosts.map(({ name }) => substituteOn(name)));
    const fileBytes = closure.reduce((sum, storePath) => sum + (parseNarInfo(readFileSync(path.join(pushed.cacheDirectory, narInfoFileName(storePath)), 'utf8')).fileSize ?? 0), 0);
    for (const [index, { name }] of hosts.entries()) {
      const { result, events, logins: loginsOf } = runs[index] as Awaited<ReturnType<typeof substituteOn>>;
      expect(result.pathsFetched, name).toHaveLength(closure.length);
      expect(result.pathsPresent, name).toEqual([]);
      expect(result.cacheUrlOnHost, name).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+${new URL(server.url).pathname}$`, 'u'));
      // Through the tunnel came at least every compressed NAR (plus narinfos and HTTP headers).
      expect(result.tunnelBytes, name).toBeGreaterThan(fileBytes);
      expect(await loginsOf(), name).toBe(1);
      expect(await validOn(name, closure), name).toEqual(closure.map(() => true));
      const verify = await labExec(name, ['nix-store', '--verify-path', ...closure], { instance });
      expect(verify.exitCode, `${name}: ${verify.stderr}`).toBe(0);
      expect(events.map((event) => event.type).filter((type) => type !== 'copy-progress'), name).toEqual(['copy-plan', 'copy-end']);
      expect(events.filter((event) => event.type === 'copy-progress'), name).toHaveLength(closure.length);
      expect(JSON.stringify(events)).not.toContain(LAB_SUDO_PASSWORD);
    }
    // The hosts fetched over HTTP: every narinfo and every NAR, once per host.
    const requests = served.slice(before);
    const okNarinfos = requests.filter((request) => request.status === 200 && request.path.endsWith('.narinfo'));
    for (const storePath of closure) expect(okNarinfos.filter((request) => request.path.endsWith(`/${narInfoFileName(storePath)}`)).length, storePath).toBeGreaterThanOrEqual(3);
    expect(requests.filter((request) => request.path.includes('/nar/'))).toHaveLength(3 * closure.length);
    expect(requests.reduce((sum, request) => sum + request.bytes, 0)).toBeGreaterThan(3 * fileBytes);
  });

  it('a second substitute is a no-op: one validity query, no tunnel, no HTTP request', async () => {
    const before = served.length;
    for (const { name } of hosts) {
      const again = await substituteOn(name);
      expect(again.result).toMatchObject({ pathsFetched: [], narBytesFetched: 0, tunnelBytes: 0, cacheUrlOnHost: undefined });
      expect(again.result.pathsPresent).toHaveLength(closure.length);
      expect(again.events.filter((event) => event.type === 'copy-progress')).toEqual([]);
      expect(await again.logins()).toBe(1);
    }
    expect(served.length).toBe(before);
  });

  it('only missing paths are fetched: a host that lacks the top path gets just that', async () => {
    await forget('pi2', [top]);
    const before = served.length;
    const partial = await substituteOn('pi2');
    expect(partial.result.pathsFetched).toEqual([top]);
    expect(partial.result.pathsPresent).toHaveLength(closure.length - 1);
    expect(served.slice(before).filter((request) => request.path.includes('/nar/'))).toHaveLength(1);
  });

  it('a cache signed with a different key is REFUSED by the host’s Nix (daemon and root alike); nothing is imported', async () => {
    const stranger = await generateCacheKey({ name: 'someone-else-1', directory: path.join(work, 'keys'), localNixEnv: nixEnv });
    for (const name of ['pi1', 'pi2']) {
      await forget(name, closure);
      const failure = await substituteOn(name, { publicKey: stranger.publicKey }).catch((error: unknown) => error);
      expect(failure, name).toMatchObject({
        code: 'PIDEPLOY_CACHE_SIGNATURE_UNTRUSTED',
        message: expect.stringContaining('someone-else-1'),
        hint: expect.stringContaining('public key'),
      });
      expect(await validOn(name, closure), name).toEqual(closure.map(() => false));
    }
  });

  it('a corrupted NAR in the cache is refused (hash mismatch); the damaged path is not imported, the store stays consistent', async () => {
    // Uncompressed, so the flipped byte reaches Nix's NAR hash check rather than the decompressor.
    const damaged = await pushToBinaryCache(
      { paths: [top], cacheDirectory: path.join(work, 'damaged'), secretKeyFile: key.secretKeyFile, compression: 'none', closure: pushed.closure, localNixEnv: nixEnv },
      createBaseContext(),
    );
    const narinfo = parseNarInfo(readFileSync(path.join(damaged.cacheDirectory, narInfoFileName(top)), 'utf8'));
    const narFile = path.join(damaged.cacheDirectory, narinfo.url);
    const bytes = readFileSync(narFile);
    const middle = Math.floor(bytes.length / 2);
    bytes[middle] = (bytes[middle] as number) ^ 0xff;
    writeFileSync(narFile, bytes);
    await using damagedServer = await serveBinaryCache({ directory: damaged.cacheDirectory });
    await forget('pi2', closure);
    const failure = await substituteOn('pi2', { cacheUrl: damagedServer.url }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_CACHE_NAR_CORRUPT', message: expect.stringContaining(top), hint: expect.stringContaining('push again') });
    expect(await validOn('pi2', [top])).toEqual([false]);
    const verify = await labExec('pi2', ['nix-store', '--verify'], { instance });
    expect(verify.exitCode, verify.stderr).toBe(0);
    // The intact cache still works for the same host.
    expect((await substituteOn('pi2')).result.pathsFetched).toContain(top);
  });

  it('an untrusted login user without sudo gets a clear error (the daemon ignores the cache settings); nothing is imported', async () => {
    await forget('pi2', closure);
    const failure = await substituteOn('pi2', { sudo: null }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_CACHE_UNTRUSTED_USER', hint: expect.stringContaining('sudo password') });
    expect(await validOn('pi2', closure)).toEqual(closure.map(() => false));
  });

  it('a wrong sudo password fails before anything is fetched, and appears nowhere', async () => {
    const before = served.length;
    const failure = await substituteOn('pi2', { sudo: { assumeMode: 'password', password: 'not-the-password' } }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG', message: expect.stringContaining('nothing was fetched') });
    expect(JSON.stringify(failure) + String(failure) + JSON.stringify((failure as { events?: DeployEvent[] }).events ?? [])).not.toContain('not-the-password');
    expect(served.length).toBe(before);
  });

  it('without the tunnel: the host fetches from a URL it reaches itself (the cache served on its link’s address)', async () => {
    const linkAddress = planLabHost(1, instance).hostAddress;
    await using onLink = await serveBinaryCache({ directory: pushed.cacheDirectory, host: linkAddress });
    await forget('pi1', closure);
    const direct = await substituteOn('pi1', { cacheUrl: onLink.url, tunnel: false });
    expect(direct.result).toMatchObject({ cacheUrlOnHost: onLink.url, tunnelBytes: 0 });
    expect(direct.result.pathsFetched).toHaveLength(closure.length);
    expect(onLink.bytesServed).toBeGreaterThan(0);
    expect(await validOn('pi1', closure)).toEqual(closure.map(() => true));
    expect(readdirSync(pushed.cacheDirectory)).toContain('nix-cache-info');
  });
});
