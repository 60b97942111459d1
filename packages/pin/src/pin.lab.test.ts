import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createCollectingReporter, createBaseContext, PideployError } from '@pideploy/core';
import { runProcess } from '@pideploy/nix';
import {
  createFixtureRepository,
  githubRateLimitFault,
  labLocalNixEnv,
  readRequestLog,
  startArchiveServer,
  writeFaultRules,
  type ArchiveServer,
  type FixtureRepository,
} from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { addPin, hashSource, parsePinsJson, updatePins, verifyPins, type PinNetworkOptions } from './index.js';

const RETRY = { attempts: 3, baseDelayMs: 10, maxDelayMs: 40 };

let root: string;
let serverRoot: string;
let server: ArchiveServer;
let repository: FixtureRepository;
let treeA: string;
let treeB: string;
let nixEnv: Record<string, string>;
let nonce: string;

async function makeTree(dir: string, version: string): Promise<string> {
  await mkdir(path.join(dir, 'lib', 'deep'), { recursive: true });
  await writeFile(path.join(dir, 'default.nix'), `{ }: { version = "${version}"; nonce = "${nonce}"; }\n`);
  await writeFile(path.join(dir, 'lib', 'deep', 'data.bin'), randomBytes(200_000));
  await writeFile(path.join(dir, 'run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(path.join(dir, 'run.sh'), 0o755);
  await symlink('default.nix', path.join(dir, 'link.nix'));
  await writeFile(path.join(dir, 'version'), `${version}\n`);
  return dir;
}

function network(extra: Partial<PinNetworkOptions> = {}): PinNetworkOptions {
  return {
    env: { PIDEPLOY_GITHUB_API: server.url, PIDEPLOY_GITHUB_ARCHIVE: server.url, HOME: root, ...(extra.env ?? {}) },
    cacheDir: path.join(root, 'cache'),
    retryPolicy: RETRY,
    ...(extra.onDownloadProgress === undefined ? {} : { onDownloadProgress: extra.onDownloadProgress }),
  };
}

async function nix(argv: string[], cwd?: string): Promise<string> {
  return (await runProcess(argv, { env: nixEnv, cwd })).stdout.trim();
}

async function projectDir(name: string): Promise<string> {
  const dir = path.join(root, 'projects', name);
  await mkdir(dir, { recursive: true });
  return dir;
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of await readdir(dir)) files[name] = (await readFile(path.join(dir, name))).toString('base64');
  return files;
}

async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function expectFailure(work: Promise<unknown>, code: string): Promise<PideployError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(PideployError.isInstance(error), `expected a PideployError ${code}, got ${String(error)}`).toBe(true);
  const pideployError = error as PideployError;
  expect(pideployError.code).toBe(code);
  expect(pideployError.message).not.toContain('\n');
  expect(pideployError.hint ?? '').not.toBe('');
  return pideployError;
}

describeLab('@pideploy/pin against the loopback GitHub and real nix', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'pideploy-pin-lab-'));
    nonce = randomBytes(8).toString('hex');
    serverRoot = path.join(root, 'server');
    treeA = await makeTree(path.join(root, 'tree-a'), '24.05-a');
    treeB = await makeTree(path.join(root, 'tree-b'), '24.05-b');
    repository = await createFixtureRepository({
      gitDir: path.join(serverRoot, 'git', 'NixOS', 'nixpkgs.git'),
      commits: [{ tree: treeA, message: 'a', branches: ['nixos-24.05'], tags: ['24.05'] }],
    });
    server = await startArchiveServer({ root: serverRoot, port: 0 });
    nixEnv = labLocalNixEnv(path.join(root, 'xdg-cache'));
  });

  afterAll(async () => {
    await server?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('pins a branch via the API and via the git ls-remote fallback (API answering 500) to the same rev and hash', async () => {
    writeFaultRules(serverRoot, []);
    const viaApi = await addPin({ ...network(), dir: await projectDir('api'), name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext());
    expect(viaApi.resolvedVia).toBe('api');
    expect(viaApi.pin.type === 'github' && viaApi.pin.rev).toBe(repository.branches['nixos-24.05']);

    writeFaultRules(serverRoot, [{ match: '/repos/', status: 500 }]);
    const viaGit = await addPin(
      { ...network(), cacheDir: path.join(root, 'cache-git'), dir: await projectDir('git'), name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } },
      createBaseContext(),
    );
    writeFaultRules(serverRoot, []);
    expect(viaGit.resolvedVia).toBe('git');
    expect(viaGit.pin).toEqual(viaApi.pin);
    expect(readRequestLog(serverRoot).some((entry) => entry.route === 'git-file')).toBe(true);

    // An annotated tag through the fallback is peeled to its commit.
    writeFaultRules(serverRoot, [{ match: '/repos/', status: 503 }]);
    const tag = await addPin({ ...network(), dir: await projectDir('tag'), name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'tag', name: '24.05' } } }, createBaseContext());
    writeFaultRules(serverRoot, []);
    expect(tag.pin.type === 'github' && tag.pin.rev).toBe(repository.tags['24.05']);
  });

  it('hashes a URL, a directory and a local tarball exactly like nix-prefetch-url --unpack and nix-hash', async () => {
    const url = `${server.url}/NixOS/nixpkgs/archive/${repository.commits[0]?.sha}.tar.gz`;
    const ours = await hashSource({ ...network(), source: url }, createBaseContext());
    expect(ours.hash).toBe(await nix(['nix-prefetch-url', '--unpack', url]));
    expect((await hashSource({ ...network(), source: url, sri: true }, createBaseContext())).hash).toBe(ours.narHash);

    expect((await hashSource({ source: treeA }, createBaseContext())).hash).toBe(await nix(['nix-hash', '--type', 'sha256', '--base32', treeA]));

    const tarball = path.join(root, 'local.tar.gz');
    await runProcess(['tar', '-czf', tarball, '-C', root, 'tree-b']);
    expect((await hashSource({ ...network(), source: tarball }, createBaseContext())).hash).toBe(await nix(['nix-prefetch-url', '--unpack', `file://${tarball}`]));

    // Several top-level entries: nix-prefetch-url hashes the unpack directory; fetchTarball (2.8) refuses.
    const multi = path.join(root, 'multi.tar.gz');
    await runProcess(['tar', '-czf', multi, '-C', root, 'tree-a', 'tree-b']);
    expect((await hashSource({ ...network(), source: multi }, createBaseContext())).hash).toBe(await nix(['nix-prefetch-url', '--unpack', `file://${multi}`]));
    const dir = await projectDir('multi');
    const error = await expectFailure(addPin({ ...network(), dir, name: 'multi', source: { type: 'url', url: `file://${multi}` } }, createBaseContext()), 'PIDEPLOY_ARCHIVE_TOP_LEVEL');
    expect(error.message).toContain('fetchTarball');
    expect(await readdir(dir)).toEqual([]);
  });

  it('writes a pins.nix that real builtins.fetchTarball accepts, at the predicted store path', async () => {
    const dir = await projectDir('eval');
    const added = await addPin({ ...network(), dir, name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext());
    const storePath = JSON.parse(await nix(['nix-instantiate', '--eval', '--json', '-E', 'let pins = import ./pins.nix; in pins.nixpkgs'], dir)) as string;
    expect(storePath).toBe(added.pin.storePath);
    const version = JSON.parse(await nix(['nix-instantiate', '--eval', '--json', '-E', 'let pins = import ./pins.nix; in (import pins.nixpkgs { }).version'], dir)) as string;
    expect(version).toBe('24.05-a');
    expect(await nix(['nix-store', '--query', '--hash', storePath])).toBe(`sha256:${added.pin.sha256}`);
  });

  it('update shows old → new after the branch moves; verify catches a tampered sha256', async () => {
    const dir = await projectDir('update');
    const added = await addPin({ ...network(), dir, name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext());
    const unchanged = await updatePins({ ...network(), dir }, createBaseContext());
    expect(unchanged.written).toBe(false);
    expect(unchanged.updates[0]?.changed).toBe(false);

    const moved = await createFixtureRepository({
      gitDir: path.join(serverRoot, 'git', 'NixOS', 'nixpkgs.git'),
      commits: [
        { tree: treeA, message: 'a', tags: ['24.05'] },
        { tree: treeB, message: 'b', branches: ['nixos-24.05'] },
      ],
    });
    try {
      const updated = await updatePins({ ...network(), dir }, createBaseContext());
      expect(updated.written).toBe(true);
      expect(updated.updates[0]).toMatchObject({ name: 'nixpkgs', changed: true, oldRev: added.pin.type === 'github' ? added.pin.rev : '', newRev: moved.branches['nixos-24.05'] });
      const file = parsePinsJson(await readFile(path.join(dir, 'pins.json'), 'utf8'));
      expect(file.pins['nixpkgs']?.sha256).toBe(updated.updates[0]?.newSha256);
      expect((await verifyPins({ ...network(), dir }, createBaseContext())).ok).toBe(true);

      // Tamper: the sha256 of tree A instead of tree B.
      const text = await readFile(path.join(dir, 'pins.json'), 'utf8');
      await writeFile(path.join(dir, 'pins.json'), text.replace(updated.updates[0]?.newSha256 as string, added.pin.sha256));
      const verified = await verifyPins({ ...network(), dir }, createBaseContext());
      expect(verified.ok).toBe(false);
      expect(verified.results[0]).toMatchObject({ specified: `sha256:${added.pin.sha256}`, got: `sha256:${updated.updates[0]?.newSha256}` });
    } finally {
      repository = await createFixtureRepository({
        gitDir: path.join(serverRoot, 'git', 'NixOS', 'nixpkgs.git'),
        commits: [{ tree: treeA, message: 'a', branches: ['nixos-24.05'], tags: ['24.05'] }],
      });
    }
  });

  it('fails with one line and a hint, leaving pins.json and pins.nix byte-identical', async () => {
    const dir = await projectDir('errors');
    await addPin({ ...network(), dir, name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext());
    const before = await snapshot(dir);
    const github = (ref: { kind: 'branch'; name: string } | { kind: 'rev'; rev: string }, repo = 'NixOS/nixpkgs') => ({ type: 'github' as const, repository: repo, ref });
    const freshRev = { kind: 'rev' as const, rev: repository.commits[0]?.sha as string };
    const uncached = { cacheDir: path.join(root, `cache-${randomBytes(4).toString('hex')}`) };

    // Unknown branch and repository (404/422): no fallback, no write.
    await expectFailure(addPin({ ...network(), dir, name: 'x', source: github({ kind: 'branch', name: 'no-such-branch' }) }, createBaseContext()), 'PIDEPLOY_PIN_NOT_FOUND');
    const noRepo = await expectFailure(addPin({ ...network(), dir, name: 'x', source: github({ kind: 'branch', name: 'main' }, 'NixOS/no-such-repo') }, createBaseContext()), 'PIDEPLOY_PIN_NOT_FOUND');
    expect(noRepo.message).toContain('NixOS/no-such-repo');

    // Rate limit with the git fallback failing too: the hint names GITHUB_TOKEN.
    writeFaultRules(serverRoot, [githubRateLimitFault(), { match: '/NixOS/nixpkgs.git', status: 503 }]);
    const limited = await expectFailure(addPin({ ...network(), dir, name: 'x', source: github({ kind: 'branch', name: 'nixos-24.05' }) }, createBaseContext()), 'PIDEPLOY_PIN_RATE_LIMITED');
    expect(limited.hint).toContain('GITHUB_TOKEN');
    // Rate limit alone: the git fallback resolves it.
    writeFaultRules(serverRoot, [githubRateLimitFault()]);
    const fallback = await addPin({ ...network(), dir: await projectDir('ratelimit-fallback'), name: 'x', source: github({ kind: 'branch', name: 'nixos-24.05' }) }, createBaseContext());
    expect(fallback.resolvedVia).toBe('git');

    // Truncated tarball (every attempt), corrupt tarball, refused port.
    writeFaultRules(serverRoot, [{ match: '/codeload/', truncateAfterBytes: 1000 }]);
    const truncated = await expectFailure(addPin({ ...network(uncached), ...uncached, dir, name: 'x', source: github(freshRev) }, createBaseContext()), 'PIDEPLOY_PIN_NETWORK');
    expect(truncated.message).toMatch(/broke off|truncated/u);
    expect(readRequestLog(serverRoot).filter((entry) => entry.route === 'tarball' && entry.fault !== undefined).length).toBeGreaterThanOrEqual(RETRY.attempts);
    writeFaultRules(serverRoot, [{ match: '/codeload/', status: 200, body: 'this is not a tarball at all, just text'.repeat(20) }]);
    await expectFailure(addPin({ ...network(), ...uncached, dir, name: 'x', source: github(freshRev) }, createBaseContext()), 'PIDEPLOY_ARCHIVE_CORRUPT');
    writeFaultRules(serverRoot, []);
    const port = await closedPort();
    const refused = await expectFailure(addPin({ ...network(), dir, name: 'x', source: { type: 'url', url: `http://127.0.0.1:${port}/x.tar.gz` } }, createBaseContext()), 'PIDEPLOY_PIN_NETWORK');
    expect(refused.message).toContain('connection refused');
    const refusedApi = await expectFailure(
      addPin({ ...network({ env: { PIDEPLOY_GITHUB_API: `http://127.0.0.1:${port}`, PIDEPLOY_GITHUB_ARCHIVE: `http://127.0.0.1:${port}` } }), dir, name: 'x', source: github({ kind: 'branch', name: 'nixos-24.05' }) }, createBaseContext()),
      'PIDEPLOY_PIN_NETWORK',
    );
    expect(refusedApi.message).toContain('connection refused');

    // A pin name that exists, a malformed lock.
    await expectFailure(addPin({ ...network(), dir, name: 'nixpkgs', source: github(freshRev) }, createBaseContext()), 'PIDEPLOY_PIN_EXISTS');
    expect(await snapshot(dir)).toEqual(before);
    const broken = await projectDir('broken');
    const brokenLock = '{ "version": 1, "pins": { "nixpkgs": { "type": "url", "url": "http://x/y.tar.gz", "sha256": "not-a-hash", "narHash": "sha256-x", "storePath": "/nix/store/x" } } }\n';
    await writeFile(path.join(broken, 'pins.json'), brokenLock);
    await expectFailure(addPin({ ...network(), dir: broken, name: 'x', source: github(freshRev) }, createBaseContext()), 'PIDEPLOY_PIN_LOCK_INVALID');
    await expectFailure(updatePins({ ...network(), dir: broken }, createBaseContext()), 'PIDEPLOY_PIN_LOCK_INVALID');
    expect(await readFile(path.join(broken, 'pins.json'), 'utf8')).toBe(brokenLock);
    expect(await snapshot(dir)).toEqual(before);
  });

  it('refuses a hostile archive without writing anything outside the cache', async () => {
    const hostileDir = path.join(root, 'hostile');
    await mkdir(hostileDir, { recursive: true });
    const hostile = path.join(hostileDir, 'hostile.tar');
    await runProcess([
      'python3',
      '-c',
      [
        'import io, sys, tarfile',
        't = tarfile.open(sys.argv[1], "w")',
        'i = tarfile.TarInfo("top/ok.txt"); d = b"ok"; i.size = len(d); t.addfile(i, io.BytesIO(d))',
        'i = tarfile.TarInfo("top/../../escaped.txt"); d = b"evil"; i.size = len(d); t.addfile(i, io.BytesIO(d))',
        't.close()',
      ].join('\n'),
      hostile,
    ]);
    const dir = await projectDir('hostile');
    const cacheDir = path.join(root, 'hostile-cache');
    const before = await readdir(root);
    await expectFailure(addPin({ ...network(), cacheDir, dir, name: 'x', source: { type: 'url', url: `file://${hostile}` } }, createBaseContext()), 'PIDEPLOY_ARCHIVE_UNSAFE');
    expect((await readdir(root)).filter((name) => name !== 'hostile-cache').sort()).toEqual(before.sort());
    expect(await readdir(hostileDir)).toEqual(['hostile.tar']);
    expect(await readdir(dir)).toEqual([]);
    expect(await readdir(path.join(cacheDir, 'pin', 'tmp'))).toEqual([]);
  });

  it('sends GITHUB_TOKEN to the API but never shows it in events, results or errors', async () => {
    const token = `ghp_${randomBytes(16).toString('hex')}`;
    writeFaultRules(serverRoot, []);
    const reporter = createCollectingReporter();
    const logStart = readRequestLog(serverRoot).length;
    const added = await addPin({ ...network({ env: { GITHUB_TOKEN: token } }), dir: await projectDir('token'), name: 'nixpkgs', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext({ reporter }));
    const apiRequests = readRequestLog(serverRoot).slice(logStart).filter((entry) => entry.route.startsWith('api-'));
    expect(apiRequests.length).toBeGreaterThan(0);
    expect(apiRequests.every((entry) => entry.authorized)).toBe(true);
    writeFaultRules(serverRoot, [githubRateLimitFault(), { match: '/NixOS/nixpkgs.git', status: 503 }]);
    const error = await addPin({ ...network({ env: { GITHUB_TOKEN: token } }), dir: await projectDir('token-error'), name: 'x', source: { type: 'github', repository: 'NixOS/nixpkgs', ref: { kind: 'branch', name: 'nixos-24.05' } } }, createBaseContext({ reporter })).catch((caught: unknown) => caught);
    writeFaultRules(serverRoot, []);
    const everything = JSON.stringify([added, reporter.events, (error as PideployError).toJSON(), (error as Error).message, await readFile(path.join(root, 'projects', 'token', 'pins.json'), 'utf8')]);
    expect(everything).not.toContain(token);
    expect(await readFile(path.join(serverRoot, 'requests.log'), 'utf8')).not.toContain(token);
  });
});
