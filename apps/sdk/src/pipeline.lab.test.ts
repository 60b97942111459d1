import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { createCollectingReporter } from '@pideploy/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createContext, deploy, loadConfig, pin, selectHosts } from './index.js';

describeLab('a custom pipeline with the SDK: canary first, then the rest (the README example)', () => {
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

  it('deploys the canary, checks it, then the rest in parallel', async () => {
    // --- the example from apps/sdk/README.md ---
    const reporter = createCollectingReporter();
    const context = createContext({ reporter });
    const config = await loadConfig({ cwd: project });
    const sudoPasswordProvider = async () => LAB_SUDO_PASSWORD;

    const canary = await deploy({ config, hosts: selectHosts(config, ['@canary']), sudoPasswordProvider }, context);
    if (!canary.ok) throw new Error(`canary failed: ${canary.results[0]?.error?.message}`);
    const rest = await deploy({ config, hosts: selectHosts(config, ['@fleet']), parallel: 5, sudoPasswordProvider }, context);
    // --- end of the example ---

    expect(canary.results.map((result) => result.host)).toEqual(['pi1']);
    expect(rest.ok).toBe(true);
    expect(rest.results.map((result) => [result.host, result.activation?.outcome])).toEqual([
      ['pi2', 'confirmed'],
      ['pi3', 'confirmed'],
    ]);
    for (const host of ['pi1', 'pi2', 'pi3']) {
      expect((await labExec(host, ['readlink', '/run/current-system'])).stdout.trim()).toBe(canary.results[0]?.toplevel);
    }
    // The canary was activated before anything was copied to the others.
    const order = reporter.events.filter((event) => event.type === 'activate-end' || event.type === 'copy-plan').map((event) => `${event.type}:${event.host}`);
    expect(order.indexOf('activate-end:pi1')).toBeLessThan(order.indexOf('copy-plan:pi2'));
  });
});
