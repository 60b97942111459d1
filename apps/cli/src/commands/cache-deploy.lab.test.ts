import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy } from '../testing/built-cli.js';

interface HostResult {
  readonly host: string;
  readonly ok: boolean;
  readonly toplevel: string;
  readonly bundle: string;
  readonly copy?: unknown;
  readonly cache?: { readonly pathsPushed: number; readonly substitute: { readonly pathsFetched: readonly string[]; readonly pathsPresent: readonly string[]; readonly tunnelBytes: number } };
  readonly activation?: { readonly outcome: string };
  readonly error?: { readonly message: string };
}

async function pideploy(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string; code: number; results: readonly HostResult[] }> {
  const run = await runBuiltPideploy(args, { cwd, env, input: `${LAB_SUDO_PASSWORD}\n` });
  const last = run.stdout.trim().split('\n').at(-1) ?? '';
  const results = last.startsWith('{"result"') ? (JSON.parse(last) as { result: { results: HostResult[] } }).result.results : [];
  return { ...run, results };
}

describeLab('pideploy deploy --cache: push once to a signed binary cache, hosts substitute from it', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  const configure = (salt: string) => writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."salt".text = "${salt}"; }\n`);
  beforeAll(async () => {
    status = await labUp({ hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { sudo: 'nopasswd' } } });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-cache-deploy-'));
    expect((await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env })).code).toBe(0);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
  });
  afterAll(async () => {
    await labDown();
  });

  it('deploys three hosts (trusted, untrusted with a sudo password, NOPASSWD) through the cache, then only the change', async () => {
    await configure(`first-${Date.now()}`);
    const loginsBefore = status.hosts.map((host) => sshLoginCount(host));
    const first = await pideploy(['deploy', '--cache', '--parallel', '3', '--sudo-password-stdin', '--json'], project, env);
    expect(first.code, first.stderr + first.stdout.slice(-3000)).toBe(0);
    expect(first.results.map((host) => [host.host, host.activation?.outcome])).toEqual([
      ['pi1', 'confirmed'],
      ['pi2', 'confirmed'],
      ['pi3', 'confirmed'],
    ]);
    for (const host of first.results) {
      // Nothing went over nix-store --serve: every path came from the cache, through the tunnel.
      expect(host.copy).toBeUndefined();
      expect(host.cache?.substitute.pathsFetched.length).toBeGreaterThan(0);
      expect(host.cache?.substitute.tunnelBytes).toBeGreaterThan(0);
      expect((await labExec(host.host, ['readlink', '/run/current-system'])).stdout.trim()).toBe(host.toplevel);
      expect((await labExec(host.host, ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(host.bundle);
      expect((await labExec(host.host, ['nix-store', '--verify-path', host.bundle])).exitCode).toBe(0);
    }
    // The shared system closure was pushed once: the hosts after the first pushed only their own bundle.
    const pushed = first.results.map((host) => host.cache?.pathsPushed ?? 0).sort((a, b) => b - a);
    expect(pushed[0]).toBeGreaterThan(3);
    expect(pushed.slice(1).every((count) => count <= 2)).toBe(true);
    // Signed narinfos in the cache, the key made once in .pideploy/cache-key; still one login + one confirmation per host.
    const cacheDir = path.join(project, '.pideploy', 'cache');
    const narinfos = readdirSync(cacheDir).filter((name) => name.endsWith('.narinfo'));
    expect(narinfos.length).toBeGreaterThan(3);
    expect(readFileSync(path.join(cacheDir, narinfos[0] as string), 'utf8')).toMatch(/^Sig: pideploy-[^:]+-1:/mu);
    const keyFiles = readdirSync(path.join(project, '.pideploy', 'cache-key')).sort();
    expect(keyFiles).toHaveLength(2);
    expect(status.hosts.map((host, index) => sshLoginCount(host) - (loginsBefore[index] ?? 0))).toEqual([2, 2, 2]);

    // A changed configuration: only the new paths go into the cache and to the hosts; same key.
    const publicKey = readFileSync(path.join(project, '.pideploy', 'cache-key', keyFiles.find((name) => name.endsWith('.public')) as string), 'utf8');
    await configure(`second-${Date.now()}`);
    const second = await pideploy(['deploy', '--cache', '--parallel', '3', '--sudo-password-stdin', '--json'], project, env);
    expect(second.code, second.stderr).toBe(0);
    for (const host of second.results) {
      expect(host.activation?.outcome).toBe('confirmed');
      expect(host.cache?.substitute.pathsPresent.length).toBeGreaterThan(0);
      expect(host.cache?.substitute.pathsFetched.length).toBeLessThan(first.results[0]?.cache?.substitute.pathsFetched.length ?? 0);
    }
    expect(readdirSync(path.join(project, '.pideploy', 'cache-key')).sort()).toEqual(keyFiles);
    expect(readFileSync(path.join(project, '.pideploy', 'cache-key', keyFiles.find((name) => name.endsWith('.public')) as string), 'utf8')).toBe(publicKey);
  });

  it('uses the cache section of pideploy.json by default, --no-cache copies instead, and a missing key file fails before any login', async () => {
    const configFile = path.join(project, 'pideploy.json');
    const original = readFileSync(configFile, 'utf8');
    try {
      const config = JSON.parse(original) as Record<string, unknown>;
      await writeFile(configFile, JSON.stringify({ ...config, cache: { compression: 'xz' } }));
      await configure(`third-${Date.now()}`);
      const viaCache = await pideploy(['deploy', 'pi1', '--sudo-password-stdin', '--json'], project, env);
      expect(viaCache.code, viaCache.stderr).toBe(0);
      expect(viaCache.results[0]?.cache?.substitute.pathsFetched.length).toBeGreaterThan(0);
      expect(readdirSync(path.join(project, '.pideploy', 'cache', 'nar')).some((name) => name.endsWith('.nar.xz'))).toBe(true);

      await configure(`fourth-${Date.now()}`);
      const viaCopy = await pideploy(['deploy', 'pi1', '--no-cache', '--sudo-password-stdin', '--json'], project, env);
      expect(viaCopy.code, viaCopy.stderr).toBe(0);
      expect(viaCopy.results[0]?.cache).toBeUndefined();
      expect(viaCopy.results[0]?.copy).toBeDefined();

      await writeFile(configFile, JSON.stringify({ ...config, cache: { secretKeyFile: './no-such.secret' } }));
      const loginsBefore = sshLoginCount(status.hosts[0]!);
      const broken = await pideploy(['deploy', 'pi1', '--sudo-password-stdin'], project, env);
      expect(broken.code).toBe(1);
      expect(broken.stderr).toMatch(/^pideploy: cannot read the cache signing key .*no-such\.secret: ENOENT$/mu);
      expect(broken.stderr).toMatch(/^hint: fix cache\.secretKeyFile/mu);
      expect(sshLoginCount(status.hosts[0]!)).toBe(loginsBefore);
    } finally {
      await writeFile(configFile, original);
    }
  });
});
