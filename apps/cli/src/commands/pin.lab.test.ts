import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createFixtureRepository, githubRateLimitFault, labLocalNixEnv, readRequestLog, runCommand, startArchiveServer, writeFaultRules, type ArchiveServer, type FixtureRepository } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { runCli } from '../cli.js';
import { createBufferIo } from '../io.js';

let root: string;
let serverRoot: string;
let server: ArchiveServer;
let repository: FixtureRepository;
let tree: string;
const token = `ghp_${randomBytes(16).toString('hex')}`;

async function cli(argv: string[], cwd: string, env: Record<string, string> = {}) {
  const io = createBufferIo({
    cwd,
    env: { PIDEPLOY_GITHUB_API: server.url, PIDEPLOY_GITHUB_ARCHIVE: server.url, XDG_CACHE_HOME: path.join(root, 'cache'), HOME: root, GITHUB_TOKEN: token, ...env },
  });
  const exitCode = await runCli(argv, io);
  return { exitCode, out: io.out(), err: io.err() };
}

describeLab('pideploy pin (CLI) against the loopback GitHub', () => {
  beforeAll(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'pideploy-cli-pin-'));
    serverRoot = path.join(root, 'server');
    tree = path.join(root, 'tree');
    await mkdir(path.join(tree, 'pkgs'), { recursive: true });
    await writeFile(path.join(tree, 'default.nix'), `{ }: "${randomBytes(8).toString('hex')}"\n`);
    await writeFile(path.join(tree, 'pkgs', 'data'), randomBytes(100_000));
    repository = await createFixtureRepository({ gitDir: path.join(serverRoot, 'git', 'NixOS', 'nixpkgs.git'), commits: [{ tree, message: 'one', branches: ['nixos-24.05'] }] });
    server = await startArchiveServer({ root: serverRoot, port: 0 });
  });

  afterAll(async () => {
    await server?.close();
    if (root !== undefined) await rm(root, { recursive: true, force: true });
  });

  it('pin hash prints exactly what nix-prefetch-url --unpack prints (nix32 and --sri)', async () => {
    const url = `${server.url}/NixOS/nixpkgs/archive/nixos-24.05.tar.gz`;
    const nix = await runCommand(['nix-prefetch-url', '--unpack', url], { env: labLocalNixEnv(path.join(root, 'xdg')) });
    const ours = await cli(['pin', 'hash', url], root);
    expect(ours.exitCode).toBe(0);
    expect(ours.out).toBe(nix.stdout);
    const sri = await cli(['pin', 'hash', '--sri', url], root);
    expect(sri.out).toMatch(/^sha256-[A-Za-z0-9+/]{43}=\n$/u);
    const json = await cli(['pin', 'hash', url, '--json'], root);
    expect(JSON.parse(json.out.trim().split('\n').at(-1) as string)).toMatchObject({ result: { hash: nix.stdout.trim(), kind: 'url' } });
    const dir = await cli(['pin', 'hash', 'tree'], root);
    expect(dir.out).toBe((await runCommand(['nix-hash', '--type', 'sha256', '--base32', tree])).stdout);
  });

  it('add, show, update, verify; a tampered sha256 fails verify with Nix\'s specified/got and exit 1', async () => {
    const project = path.join(root, 'project');
    await mkdir(project);
    await writeFile(path.join(project, 'pideploy.json'), '{}\n');
    const added = await cli(['pin', 'add', 'nixpkgs', '--github', 'NixOS/nixpkgs', '--branch', 'nixos-24.05', '--config', 'project/pideploy.json'], root);
    expect(added.exitCode).toBe(0);
    expect(added.out).toContain(repository.branches['nixos-24.05']);
    const show = await cli(['pin', 'show', '--json'], project);
    const shown = JSON.parse(show.out.trim()) as { result: { file: { pins: Record<string, { rev: string; sha256: string }> } } };
    expect(shown.result.file.pins['nixpkgs']?.rev).toBe(repository.branches['nixos-24.05']);
    const update = await cli(['pin', 'update'], project);
    expect(update.out).toBe(`nixpkgs: unchanged at ${repository.branches['nixos-24.05']}\nnothing changed\n`);
    expect((await cli(['pin', 'verify'], project)).exitCode).toBe(0);

    const sha256 = shown.result.file.pins['nixpkgs']?.sha256 as string;
    const tampered = `0${sha256.slice(1, -1)}${sha256.endsWith('0') ? '1' : '0'}`;
    const text = await readFile(path.join(project, 'pins.json'), 'utf8');
    await writeFile(path.join(project, 'pins.json'), text.replace(sha256, tampered));
    const verify = await cli(['pin', 'verify', 'nixpkgs'], project);
    expect(verify.exitCode).toBe(1);
    expect(verify.err).toMatch(new RegExp(`^pideploy: hash mismatch in file downloaded from '[^']+' \\(pin nixpkgs\\): specified: sha256:${tampered} got: sha256:${sha256}\\nhint: .+\\n$`, 'mu'));
  });

  it('bad input: one line + hint on stderr, exit 1, pins files untouched, token never printed', async () => {
    const project = path.join(root, 'errors');
    await mkdir(project);
    expect((await cli(['pin', 'add', 'nixpkgs', '--github', 'NixOS/nixpkgs', '--branch', 'nixos-24.05'], project)).exitCode).toBe(0);
    const before = [await readFile(path.join(project, 'pins.json')), await readFile(path.join(project, 'pins.nix'))];
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const cases: { readonly name: string; readonly argv: string[]; readonly faults?: Parameters<typeof writeFaultRules>[1]; readonly env?: Record<string, string>; readonly expect: RegExp }[] = [
      { name: 'unknown branch', argv: ['--branch', 'nope'], expect: /GitHub has no branch nope/u },
      { name: 'unknown repository', argv: ['--branch', 'nope'], env: {}, expect: /GitHub has no repository NixOS\/missing/u },
      { name: 'rate limit', argv: ['--branch', 'nixos-24.05'], faults: [githubRateLimitFault(), { match: '/NixOS/nixpkgs.git', status: 503 }], expect: /rate limit exceeded[^\n]*\nhint: set GITHUB_TOKEN/u },
      { name: 'truncated', argv: ['--rev', repository.commits[0]?.sha as string], faults: [{ match: '/codeload/', truncateAfterBytes: 500 }], env: { XDG_CACHE_HOME: path.join(root, 'cache-truncated') }, expect: /broke off after 500 of \d+ bytes/u },
      { name: 'network down', argv: ['--branch', 'nixos-24.05'], env: { PIDEPLOY_GITHUB_API: `http://127.0.0.1:${port}`, PIDEPLOY_GITHUB_ARCHIVE: `http://127.0.0.1:${port}` }, expect: /connection refused/u },
    ];
    for (const testCase of cases) {
      writeFaultRules(serverRoot, testCase.faults ?? []);
      const repo = testCase.name === 'unknown repository' ? 'NixOS/missing' : 'NixOS/nixpkgs';
      const result = await cli(['pin', 'add', 'other', '--github', repo, ...testCase.argv], project, testCase.env);
      writeFaultRules(serverRoot, []);
      expect(result.exitCode, testCase.name).toBe(1);
      const lines = result.err.trimEnd().split('\n');
      const failure = lines.slice(-2);
      expect(failure[0], testCase.name).toMatch(/^pideploy: /u);
      expect(failure[1], testCase.name).toMatch(/^hint: /u);
      expect(failure.join('\n'), testCase.name).toMatch(testCase.expect);
      expect(result.out + result.err, testCase.name).not.toContain(token);
      expect([await readFile(path.join(project, 'pins.json')), await readFile(path.join(project, 'pins.nix'))], testCase.name).toEqual(before);
    }
    const malformed = await cli(['pin', 'add', 'x', '--url', `${server.url}/x.tar.gz`, '--dir', path.join(root, 'nonexistent')], root);
    expect(malformed.exitCode).toBe(1);
    expect(readRequestLog(serverRoot).filter((entry) => entry.route.startsWith('api-')).every((entry) => entry.authorized)).toBe(true);
  });
});
