import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, isProcessRunning } from '@pideploy/lab/testing';
import { createCollectingReporter } from '@pideploy/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { activate, createContext, deploy, hostBuilderFor, loadConfig, pin, selectHosts, ssh, transport } from './index.js';

describeLab('a custom pipeline with the SDK: build once, canary first, then the rest (the README example)', () => {
  let status: LabStatus;
  let project: string;
  beforeAll(async () => {
    status = await labUp({ hosts: 3 });
    Object.assign(process.env, status.env);
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-sdk-pipeline-'));
    await writeFile(path.join(project, 'configuration.nix'), '{ pkgs, ... }: { networking.hostName = "fleet"; environment.systemPackages = [ pkgs.hello ]; system.stateVersion = "24.05"; }\n');
    const hosts = Object.fromEntries(
      status.hosts.map((host) => [host.name, { target: host.target, configuration: './configuration.nix', sshConfig: host.sshConfig, tags: host.name === 'pi1' ? ['canary'] : ['fleet'] }]),
    );
    await writeFile(path.join(project, 'pideploy.json'), JSON.stringify({ defaults: { system: 'aarch64-linux' }, hosts }));
    await pin.addPin({ dir: project, name: 'nixpkgs', source: pin.parsePinSourceArguments({ github: 'NixOS/nixpkgs', branch: 'nixos-24.05', tag: undefined, rev: undefined, url: undefined }), env: process.env }, createContext());
  });
  afterAll(async () => {
    await labDown();
  });

  it('builds once, copies to and activates the canary, then deploys the rest in parallel', async () => {
    // --- the example from apps/sdk/README.md ---
    const reporter = createCollectingReporter();
    const context = createContext({ reporter });
    const config = await loadConfig({ cwd: project });
    const sudoPasswordProvider = async () => LAB_SUDO_PASSWORD; // or a prompt

    // Build once: every host of this configuration reuses the builder's result.
    const builder = hostBuilderFor(config);
    const [canary] = selectHosts(config, ['@canary']);
    if (canary === undefined) throw new Error('no @canary host');
    const built = await builder.build(canary, context);

    // Copy to the canary over one SSH connection and activate it (magic rollback on).
    await using session = await ssh.connectSsh(canary.target, { sshConfigFile: canary.sshConfig }, context);
    const sudo = await ssh.createSudo(session, { passwordProvider: sudoPasswordProvider });
    const password = await sudoPasswordProvider();
    const access = transport.storeAccessFor(sudo);
    await transport.copyClosure({ host: canary.name, session, paths: [built.bundle.outPath], access }, context);
    const switched = await activate.activateSystem(
      { target: canary.target, session, connect: { sshConfigFile: canary.sshConfig }, sudo: { password }, toplevel: built.toplevel.outPath, bundle: built.bundle.outPath },
      context,
    );
    if (switched.outcome !== 'confirmed') throw new Error(`canary: ${switched.outcome}`);

    // Then the rest, five at a time, without building again.
    const rest = await deploy({ config, hosts: selectHosts(config, ['@fleet']), parallel: 5, builder, sudoPasswordProvider }, context);
    // --- end of the example ---

    expect(rest.ok).toBe(true);
    expect(rest.results.map((result) => [result.host, result.activation?.outcome, result.sharedBuildWith])).toEqual([
      ['pi2', 'confirmed', 'pi1'],
      ['pi3', 'confirmed', 'pi1'],
    ]);
    // One build for the three hosts.
    expect(reporter.events.filter((event) => event.type === 'build-start')).toHaveLength(1);
    for (const host of ['pi1', 'pi2', 'pi3']) {
      expect((await labExec(host, ['readlink', '/run/current-system'])).stdout.trim()).toBe(built.toplevel.outPath);
    }
    expect((await labExec('pi1', ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(built.bundle.outPath);
    // The canary was activated before anything was copied to the others.
    const order = reporter.events.filter((event) => event.type === 'activate-end' || event.type === 'copy-plan').map((event) => `${event.type}:${event.host}`);
    expect(order.indexOf('activate-end:pi1')).toBeLessThan(order.indexOf('copy-plan:pi2'));
  });

  it('evaluates the bundles of hosts built at the same time in one nix-instantiate, each still its own', async () => {
    const reporter = createCollectingReporter();
    const context = createContext({ reporter });
    const config = await loadConfig({ cwd: project });
    const hosts = selectHosts(config, []);
    const builds = await Promise.all(hosts.map((host) => hostBuilderFor(config).build(host, context)));
    const shared = await Promise.all((() => {
      const builder = hostBuilderFor(config);
      return hosts.map((host) => builder.build(host, context));
    })());
    // The same bundles as built one by one, each with its host in the manifest and its own GC root.
    expect(shared.map((build) => build.bundle.outPath)).toEqual(builds.map((build) => build.bundle.outPath));
    expect(shared.map((build) => build.bundle.manifest.host)).toEqual(hosts.map((host) => host.name));
    expect(new Set(shared.map((build) => build.bundle.outPath)).size).toBe(hosts.length);
    const together = reporter.events.filter((event) => event.type === 'log' && event.message.includes('one nix-instantiate'));
    expect(together.map((event) => event.type === 'log' && event.host).sort()).toEqual(hosts.map((host) => host.name).sort());
  });

  it('makes hosts that ask while a bundle is being built wait for it, then evaluates theirs together', async () => {
    const reporter = createCollectingReporter();
    const context = createContext({ reporter });
    const config = await loadConfig({ cwd: project });
    const builder = hostBuilderFor(config);
    const [first, second, third] = selectHosts(config, []);
    if (first === undefined || second === undefined || third === undefined) throw new Error('three hosts needed');
    const { toplevel } = await builder.buildToplevel(first, context);
    const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
    // The first host's bundle starts alone; the others ask later, one by one (their logins ended
    // after the shared build), while it is being evaluated.
    const bundles = [builder.bundle(first, toplevel, context)];
    await nextTurn();
    await nextTurn();
    bundles.push(builder.bundle(second, toplevel, context));
    await nextTurn();
    await nextTurn();
    bundles.push(builder.bundle(third, toplevel, context));
    const built = await Promise.all(bundles);
    expect(built.map((bundle) => bundle.manifest.host)).toEqual([first.name, second.name, third.name]);
    const together = reporter.events.flatMap((event) => (event.type === 'log' && event.message.includes('one nix-instantiate') ? [`${event.host}: ${event.message}`] : []));
    expect(together.sort()).toEqual([`${second.name}: bundle evaluated together with ${third.name} (one nix-instantiate)`, `${third.name}: bundle evaluated together with ${second.name} (one nix-instantiate)`]);
  });

  it('falls back to one evaluation per host when the batch cannot be evaluated: only the broken bundle fails', async () => {
    const reporter = createCollectingReporter();
    const context = createContext({ reporter });
    const config = await loadConfig({ cwd: project });
    const builder = hostBuilderFor(config);
    const [good, bad] = selectHosts(config, []);
    if (good === undefined || bad === undefined) throw new Error('two hosts needed');
    const { toplevel } = await builder.buildToplevel(good, context);
    const missing = { ...toplevel, drvPath: `${path.dirname(toplevel.drvPath)}/00000000000000000000000000000000-missing.drv` };
    const [built, broken] = await Promise.allSettled([builder.bundle(good, toplevel, context), builder.bundle(bad, missing, context)]);
    expect(built).toMatchObject({ status: 'fulfilled', value: { host: good.name, manifest: { host: good.name, toplevel: toplevel.outPath } } });
    expect(broken).toMatchObject({ status: 'rejected', reason: { code: 'PIDEPLOY_BUNDLE_FAILED', message: expect.stringContaining(`building the bundle of ${bad.name} failed`) } });
    const fallbacks = reporter.events.filter((event) => event.type === 'log' && event.message.startsWith('evaluating the bundles together failed'));
    expect(fallbacks.map((event) => event.type === 'log' && event.host).sort()).toEqual([good.name, bad.name].sort());
  });

  it('asks one sudo password for hosts that share the login user, even deployed in parallel', async () => {
    const config = await loadConfig({ cwd: project });
    const asked: string[] = [];
    const result = await deploy(
      { config, hosts: selectHosts(config, ['pi*']), parallel: 3, sudoPasswordProvider: async ({ host }) => (asked.push(host), LAB_SUDO_PASSWORD) },
      createContext(),
    );
    expect(result.ok).toBe(true);
    expect(result.results).toHaveLength(3);
    expect(asked).toHaveLength(1);
  });
  it('a shared build stops only when no host waits for it any more; a later host starts a new one', async () => {
    const salt = `shared-${Date.now()}`;
    await writeFile(path.join(project, 'slow.nix'), `{ pkgs, ... }: { environment.systemPackages = [ (pkgs.runCommand "${salt}" { } "sleep 57; mkdir $out") ]; system.stateVersion = "24.05"; }\n`);
    const config = await loadConfig({ cwd: project });
    const [base] = selectHosts(config, ['pi2']);
    if (base === undefined) throw new Error('no pi2');
    const slow = (name: string) => ({ ...base, name, configuration: path.join(project, 'slow.nix') });
    const builder = hostBuilderFor(config);
    // The derivation's builder, under qemu here: `busybox sleep 57` (no other test sleeps 57 s).
    const builderRunning = () => isProcessRunning('busybox sleep 57');
    const waitUntil = async (condition: () => Promise<boolean>, ms: number) => {
      const started = Date.now();
      while (Date.now() - started < ms) {
        if (await condition()) return true;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return false;
    };
    const first = new AbortController();
    const second = new AbortController();
    const a = builder.buildToplevel(slow('a'), createContext({ signal: first.signal }));
    const b = builder.buildToplevel(slow('b'), createContext({ signal: second.signal }));
    expect(await waitUntil(builderRunning, 30_000)).toBe(true);
    // One of two gives up: it stops waiting, the build goes on for the other.
    first.abort();
    await expect(a).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await builderRunning()).toBe(true);
    // The last one gives up: the build stops.
    second.abort();
    await expect(b).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    expect(await waitUntil(async () => !(await builderRunning()), 10_000)).toBe(true);
    // A host asking afterwards gets a new build, not the stopped one.
    const third = new AbortController();
    const c = builder.buildToplevel(slow('c'), createContext({ signal: third.signal }));
    expect(await waitUntil(builderRunning, 30_000)).toBe(true);
    third.abort();
    await expect(c).rejects.toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    expect(await waitUntil(async () => !(await builderRunning()), 10_000)).toBe(true);
  }, 120_000);
});
