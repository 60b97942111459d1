import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFixtureRepository, type FixtureRepository } from '../git-repo.js';
import { labLocalNixEnv } from '../nix-env.js';
import { runCommand, runCommandAllowingFailure } from '../run.js';
import { describeLab } from '../testing/index.js';
import { GITHUB_RATE_LIMIT_MESSAGE, githubRateLimitFault, writeFaultRules } from './faults.js';
import { readRequestLog, startArchiveServer, type ArchiveServer } from './server.js';

/** Keeps every HTTP client of these tests on loopback, whatever proxy variables are around. */
const NO_PROXY_ENV = {
  http_proxy: '',
  https_proxy: '',
  HTTP_PROXY: '',
  HTTPS_PROXY: '',
  all_proxy: '',
  ALL_PROXY: '',
  no_proxy: '127.0.0.1,localhost',
  NO_PROXY: '127.0.0.1,localhost',
};
const GIT_ENV = { ...NO_PROXY_ENV, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_TERMINAL_PROMPT: '0' };

describeLab('archive server (real git, real nix, loopback HTTP)', () => {
  let workDir = '';
  let root = '';
  let nixEnv: Record<string, string> = {};
  let server: ArchiveServer;
  let repository: FixtureRepository;
  let first = '';
  let second = '';
  let third = '';

  const requestsSince = (count: number) => readRequestLog(root).slice(count);
  const download = async (url: string): Promise<Buffer> => {
    const response = await fetch(url);
    expect(response.status).toBe(200);
    return Buffer.from(await response.arrayBuffer());
  };
  const topLevelEntries = async (tarball: Buffer): Promise<string[]> => {
    const file = path.join(workDir, `listing-${randomUUID()}.tar.gz`);
    await writeFile(file, tarball);
    const listing = (await runCommand(['tar', '-tzf', file])).stdout.split('\n').filter((line) => line !== '');
    return [...new Set(listing.map((entry) => entry.split('/')[0] ?? ''))].sort();
  };

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'pideploy-archive-lab-'));
    root = path.join(workDir, 'root');
    nixEnv = { ...labLocalNixEnv(path.join(workDir, 'xdg-cache')), ...NO_PROXY_ENV };
    const trees = [];
    for (const version of ['1', '2', '3']) {
      const tree = path.join(workDir, `tree-${version}`);
      await mkdir(path.join(tree, 'lib'), { recursive: true });
      await writeFile(path.join(tree, 'default.nix'), `{ }: { version = "${version}"; lib = import ./lib; }\n`);
      await writeFile(path.join(tree, 'lib', 'default.nix'), '{ answer = 42; }\n');
      trees.push(tree);
    }
    // The third commit differs on every run, so Nix has to download it (nothing valid in the store yet).
    await writeFile(path.join(trees[2] ?? '', 'nonce'), `${randomUUID()}\n`);
    repository = await createFixtureRepository({
      gitDir: path.join(root, 'git', 'lab-owner', 'fakepkgs.git'),
      defaultBranch: 'master',
      commits: [
        { tree: trees[0] ?? '', message: 'fakepkgs 1', branches: ['nixos-24.05'], tags: ['24.05'] },
        { tree: trees[1] ?? '', message: 'fakepkgs 2\n\nwith a body', branches: ['nixos-unstable', 'master'], tags: ['v2.0'] },
        { tree: trees[2] ?? '', message: 'fakepkgs 3', branches: ['feature/nonce'] },
      ],
    });
    [first, second, third] = repository.commits.map((commit) => commit.sha) as [string, string, string];
    server = await startArchiveServer({ root });
  });

  afterAll(async () => {
    await server?.close();
    await rm(workDir, { recursive: true, force: true });
  });

  it('answers the commits API with a bare sha or GitHub-shaped JSON for branches, tags and (short) shas', async () => {
    const api = `${server.url}/repos/lab-owner/fakepkgs`;
    for (const [ref, sha] of [
      ['nixos-24.05', first],
      ['master', second],
      ['24.05', first],
      ['refs/tags/v2.0', second],
      ['feature/nonce', third],
      [third, third],
      [third.slice(0, 7), third],
    ] as const) {
      const response = await fetch(`${api}/commits/${ref}`, { headers: { accept: 'application/vnd.github.sha' } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/u);
      expect(await response.text()).toBe(sha);
    }
    const json = await fetch(`${api}/commits/nixos-unstable`, { headers: { accept: 'application/vnd.github+json' } });
    expect(json.headers.get('x-ratelimit-limit')).toBe('60');
    expect(json.headers.get('x-ratelimit-remaining')).toMatch(/^\d+$/u);
    expect(await json.json()).toMatchObject({
      sha: second,
      commit: { message: 'fakepkgs 2\n\nwith a body', committer: { name: 'pideploy lab', date: '2024-01-01T01:00:00Z' } },
      parents: [{ sha: first }],
    });
    const authorized = await fetch(`${api}/commits/master`, { headers: { authorization: 'token lab-token' } });
    expect(authorized.headers.get('x-ratelimit-limit')).toBe('5000');
  });

  it('answers unknown repositories 404, unknown refs 422, branches and the repository as GitHub does', async () => {
    const missingRepo = await fetch(`${server.url}/repos/lab-owner/nothing/commits/master`);
    expect(missingRepo.status).toBe(404);
    expect(await missingRepo.json()).toMatchObject({ message: 'Not Found' });
    const missingRef = await fetch(`${server.url}/repos/lab-owner/fakepkgs/commits/nixos-99.99`, { headers: { accept: 'application/vnd.github.sha' } });
    expect(missingRef.status).toBe(422);
    expect(await missingRef.json()).toMatchObject({ message: 'No commit found for SHA: nixos-99.99' });
    const branch = await fetch(`${server.url}/repos/lab-owner/fakepkgs/branches/nixos-24.05`);
    expect(await branch.json()).toMatchObject({ name: 'nixos-24.05', commit: { sha: first } });
    const missingBranch = await fetch(`${server.url}/repos/lab-owner/fakepkgs/branches/24.05`);
    expect(missingBranch.status).toBe(404);
    expect(await missingBranch.json()).toMatchObject({ message: 'Branch not found' });
    const repo = await fetch(`${server.url}/repos/LAB-OWNER/FakePkgs`);
    expect(await repo.json()).toMatchObject({ full_name: 'lab-owner/fakepkgs', default_branch: 'master' });
  });

  it('serves git\'s dumb HTTP protocol: ls-remote shows the fixture refs and a clone works', async () => {
    const url = `${server.url}/lab-owner/fakepkgs.git`;
    const lines = (await runCommand(['git', 'ls-remote', url], { env: GIT_ENV })).stdout.trim().split('\n');
    const refs = Object.fromEntries(lines.map((line) => line.split('\t').reverse() as [string, string]));
    expect(refs).toMatchObject({
      HEAD: second,
      'refs/heads/master': second,
      'refs/heads/nixos-24.05': first,
      'refs/heads/nixos-unstable': second,
      'refs/heads/feature/nonce': third,
      'refs/tags/24.05': repository.tagObjects['24.05'],
      'refs/tags/24.05^{}': first,
      'refs/tags/v2.0^{}': second,
    });
    const branchOnly = await runCommand(['git', 'ls-remote', '--refs', url, 'refs/heads/nixos-24.05'], { env: GIT_ENV });
    expect(branchOnly.stdout).toBe(`${first}\trefs/heads/nixos-24.05\n`);
    const symref = await runCommand(['git', 'ls-remote', '--symref', url, 'HEAD'], { env: GIT_ENV });
    expect(symref.stdout).toContain('ref: refs/heads/master\tHEAD');
    const clone = path.join(workDir, 'clone');
    await runCommand(['git', 'clone', '--quiet', '--branch', 'nixos-24.05', url, clone], { env: GIT_ENV });
    expect(readFileSync(path.join(clone, 'default.nix'), 'utf8')).toContain('version = "1"');
  });

  it('redirects archive URLs to codeload paths and serves identical one-directory tarballs', async () => {
    const before = readRequestLog(root).length;
    const archiveUrl = `${server.url}/lab-owner/fakepkgs/archive/${second}.tar.gz`;
    const redirect = await fetch(archiveUrl, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(`${server.url}/codeload/lab-owner/fakepkgs/tar.gz/${second}`);
    const response = await fetch(archiveUrl);
    expect(response.headers.get('content-type')).toBe('application/x-gzip');
    const body = Buffer.from(await response.arrayBuffer());
    expect(Number(response.headers.get('content-length'))).toBe(body.length);
    expect(await topLevelEntries(body)).toEqual([`fakepkgs-${second}`]);
    const again = await download(archiveUrl);
    expect(again.equals(body)).toBe(true);
    const log = requestsSince(before);
    expect(log.map((entry) => [entry.path, entry.status])).toEqual([
      [`/lab-owner/fakepkgs/archive/${second}.tar.gz`, 302],
      [`/lab-owner/fakepkgs/archive/${second}.tar.gz`, 302],
      [`/codeload/lab-owner/fakepkgs/tar.gz/${second}`, 200],
      [`/lab-owner/fakepkgs/archive/${second}.tar.gz`, 302],
      [`/codeload/lab-owner/fakepkgs/tar.gz/${second}`, 200],
    ]);
    expect(log[2]?.bytes).toBe(body.length);
    expect((await readdir(path.join(root, 'cache'))).filter((file) => file.startsWith(second))).toHaveLength(1);

    expect(await topLevelEntries(await download(`${server.url}/lab-owner/fakepkgs/archive/refs/heads/nixos-24.05.tar.gz`))).toEqual(['fakepkgs-nixos-24.05']);
    expect(await topLevelEntries(await download(`${server.url}/lab-owner/fakepkgs/archive/refs/tags/v2.0.tar.gz`))).toEqual(['fakepkgs-2.0']);
    expect(await topLevelEntries(await download(`${server.url}/repos/lab-owner/fakepkgs/tarball/24.05`))).toEqual([`lab-owner-fakepkgs-${first.slice(0, 7)}`]);
    expect((await fetch(`${server.url}/lab-owner/fakepkgs/archive/nixos-99.99.tar.gz`)).status).toBe(404);
    expect((await fetch(`${server.url}/codeload/lab-owner/fakepkgs/tar.gz/nixos-99.99`)).status).toBe(404);
  });

  it('works with real Nix: nix-prefetch-url --unpack, then builtins.fetchTarball with that hash', async () => {
    const url = `${server.url}/lab-owner/fakepkgs/archive/${third}.tar.gz`;
    const before = readRequestLog(root).length;
    const prefetch = await runCommand(['nix-prefetch-url', '--unpack', '--name', 'source', url], { env: nixEnv });
    const hash = prefetch.stdout.trim();
    expect(hash).toMatch(/^[0-9a-df-np-sv-z]{52}$/u);
    expect(requestsSince(before).map((entry) => [entry.method, entry.path, entry.status])).toEqual([
      ['GET', `/lab-owner/fakepkgs/archive/${third}.tar.gz`, 302],
      ['GET', `/codeload/lab-owner/fakepkgs/tar.gz/${third}`, 200],
    ]);
    // The same hash as nix-hash of the unpacked top-level directory (differential check).
    const unpackDir = path.join(workDir, 'unpacked');
    await mkdir(unpackDir);
    await writeFile(path.join(workDir, 'third.tar.gz'), await download(url));
    await runCommand(['tar', '-xzf', path.join(workDir, 'third.tar.gz'), '-C', unpackDir]);
    const nixHash = await runCommand(['nix-hash', '--type', 'sha256', '--base32', path.join(unpackDir, `fakepkgs-${third}`)], { env: nixEnv });
    expect(nixHash.stdout.trim()).toBe(hash);

    const fetchTarball = `builtins.fetchTarball { url = "${url}"; sha256 = "${hash}"; }`;
    const storePath = await runCommand(['nix-instantiate', '--eval', '-E', fetchTarball], { env: nixEnv });
    expect(storePath.stdout.trim()).toMatch(/^"\/nix\/store\/[0-9a-z]{32}-source"$/u);
    const version = await runCommand(['nix-instantiate', '--eval', '-E', `(import (${fetchTarball}) {}).version`], { env: nixEnv });
    expect(version.stdout.trim()).toBe('"3"');
    const answer = await runCommand(['nix-instantiate', '--eval', '-E', `(import (${fetchTarball}) {}).lib.answer`], { env: nixEnv });
    expect(answer.stdout.trim()).toBe('42');
  });

  it('lets builtins.fetchTarball download by itself (branch archive URL), and rejects a wrong hash', async () => {
    const url = `${server.url}/lab-owner/fakepkgs/archive/refs/heads/feature/nonce.tar.gz`;
    const unpackDir = path.join(workDir, 'unpacked-branch');
    await mkdir(unpackDir);
    await writeFile(path.join(workDir, 'branch.tar.gz'), await download(url));
    await runCommand(['tar', '-xzf', path.join(workDir, 'branch.tar.gz'), '-C', unpackDir]);
    const hash = (await runCommand(['nix-hash', '--type', 'sha256', '--base32', path.join(unpackDir, 'fakepkgs-feature-nonce')], { env: nixEnv })).stdout.trim();
    const sri = (await runCommand(['nix', 'hash', 'to-sri', '--type', 'sha256', hash], { env: nixEnv })).stdout.trim();
    // Named differently from "source", so this path is not valid yet and Nix must download.
    const before = readRequestLog(root).length;
    const expression = `(import (builtins.fetchTarball { name = "nonce-${third.slice(0, 8)}"; url = "${url}"; sha256 = "${sri}"; }) {}).version`;
    expect((await runCommand(['nix-instantiate', '--eval', '-E', expression], { env: nixEnv })).stdout.trim()).toBe('"3"');
    expect(requestsSince(before).map((entry) => entry.status)).toEqual([302, 200]);
    const wrong = await runCommandAllowingFailure(
      ['nix-instantiate', '--eval', '-E', `builtins.fetchTarball { name = "wrong-${third.slice(0, 8)}"; url = "${url}"; sha256 = "${'0'.repeat(52)}"; }`],
      { env: nixEnv },
    );
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain('hash mismatch in file downloaded from');
  });

  it('injects faults: a rate limit served `times` times then normal answers; 500 then success; a truncated tarball', async () => {
    const api = `${server.url}/repos/lab-owner/fakepkgs/commits/master`;
    writeFaultRules(root, [githubRateLimitFault({ times: 2 })]);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const limited = await fetch(api, { headers: { accept: 'application/vnd.github.sha' } });
      expect(limited.status).toBe(403);
      expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
      expect(await limited.json()).toMatchObject({ message: GITHUB_RATE_LIMIT_MESSAGE });
    }
    const recovered = await fetch(api, { headers: { accept: 'application/vnd.github.sha' } });
    expect(recovered.status).toBe(200);
    expect(await recovered.text()).toBe(second);
    expect(readRequestLog(root).slice(-3).map((entry) => [entry.status, entry.fault])).toEqual([
      [403, 0],
      [403, 0],
      [200, undefined],
    ]);

    const codeload = `/codeload/lab-owner/fakepkgs/tar.gz/${first}`;
    writeFaultRules(root, [
      { match: codeload, status: 500, times: 1 },
      { match: '^/codeload/.*/tar\\.gz/', truncateAfterBytes: 64, times: 1 },
    ]);
    const archiveUrl = `${server.url}/lab-owner/fakepkgs/archive/${first}.tar.gz`;
    expect((await fetch(archiveUrl)).status).toBe(500);
    const truncated = await fetch(archiveUrl);
    expect(truncated.status).toBe(200);
    await expect(truncated.arrayBuffer()).rejects.toThrow();
    expect(readRequestLog(root).at(-1)).toMatchObject({ path: codeload, status: 200, bytes: 64, fault: 1 });
    expect((await download(archiveUrl)).length).toBeGreaterThan(64);

    writeFaultRules(root, [{ match: '^/codeload/', truncateAfterBytes: 64, times: 1 }]);
    const failed = await runCommandAllowingFailure(['nix-prefetch-url', '--unpack', '--name', 'source', archiveUrl], { env: nixEnv });
    expect(failed.exitCode).not.toBe(0);
    writeFaultRules(root, []);
  });

  it('runs as a program: main.js writes server.json, answers, and exits 0 on SIGTERM', async () => {
    const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const entry = path.join(packageRoot, 'dist', 'archive-server', 'main.js');
    expect(existsSync(entry), `${entry} is missing: run pnpm build first`).toBe(true);
    const programRoot = path.join(workDir, 'program-root');
    const child = spawn(process.execPath, [entry, '--root', programRoot, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const serverFile = path.join(programRoot, 'server.json');
      const deadline = Date.now() + 10_000;
      while (!existsSync(serverFile) && Date.now() < deadline) await sleep(50);
      const info = JSON.parse(readFileSync(serverFile, 'utf8')) as { pid: number; port: number; url: string };
      expect(info).toEqual({ pid: child.pid, port: info.port, url: `http://127.0.0.1:${info.port}` });
      const response = await fetch(`${info.url}/repos/o/r`);
      expect(response.status).toBe(404);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(existsSync(serverFile)).toBe(false);
      expect(stderr).toContain(`listening on ${info.url}`);
      expect(stderr).toContain('GET /repos/o/r 404');
      expect(readRequestLog(programRoot)).toHaveLength(1);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
