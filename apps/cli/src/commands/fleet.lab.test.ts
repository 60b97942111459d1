import { readFileSync } from 'node:fs';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy } from '../testing/built-cli.js';

interface Line {
  readonly event?: { readonly type: string; readonly host?: string; readonly phase?: string };
  readonly result?: {
    readonly ok: boolean;
    readonly results: readonly {
      readonly host: string;
      readonly ok: boolean;
      readonly toplevel?: string;
      readonly bundle?: string;
      readonly sharedBuildWith?: string;
      readonly activation?: { readonly outcome: string };
      readonly error?: { readonly code: string; readonly message: string };
    }[];
  };
}

/** Runs the CLI with the sudo password on stdin (what `--sudo-password-stdin` reads). */
const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideploy(args, { cwd, env, input: `${LAB_SUDO_PASSWORD}\n` });

describeLab('pideploy deploy on a fleet: 10 hosts, --parallel 5, tags, one host down, canaries', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    status = await labUp({ hosts: 10 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-fleet-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    // Two configurations: pi1-pi8 share one ("fleet"), pi9 has its own ("kiosk"); pi10 is down.
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
    await writeFile(path.join(project, 'configuration.nix'), '{ ... }: { imports = [ ./common.nix ]; }\n');
    await writeFile(path.join(project, 'kiosk.nix'), '{ ... }: { imports = [ ./common.nix ]; environment.etc."kiosk".text = "on"; }\n');
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, { target: string; configuration: string; tags?: string[] }> };
    for (const host of status.hosts) {
      const entry = config.hosts[host.name];
      if (entry === undefined) throw new Error(`init --lab did not add ${host.name}`);
      entry.tags = host.name === 'pi1' ? ['fleet', 'canary'] : ['fleet'];
      if (host.name === 'pi9') entry.configuration = './kiosk.nix';
      // Nothing listens on port 2 of the host: connection refused, as for a Pi that is off.
      if (host.name === 'pi10') entry.target = `deploy@${host.address}:2`;
    }
    config.hosts['spare'] = { target: 'deploy@192.0.2.1', configuration: './configuration.nix', tags: ['spare'] };
    await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);
  });
  afterAll(async () => {
    await labDown();
  });

  it('deploys the tagged hosts five at a time, builds each configuration once, and reports the host that is down', async () => {
    const run = await pideploy(['deploy', '--on', '@fleet', '--parallel', '5', '--sudo-password-stdin', '--json'], project, env);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Line);
    const result = lines.at(-1)?.result;
    expect(run.code, run.stderr).toBe(1);
    // Selected by tag: the spare host (tag "spare") is not touched.
    expect(result?.results.map((host) => host.host), run.stderr + run.stdout.slice(0, 2000)).toEqual(['pi1', 'pi2', 'pi3', 'pi4', 'pi5', 'pi6', 'pi7', 'pi8', 'pi9', 'pi10']);
    const outcomes = Object.fromEntries(result?.results.map((host) => [host.host, host.ok ? host.activation?.outcome : `FAILED ${host.error?.code}`]) ?? []);
    expect(outcomes).toEqual({
      pi1: 'confirmed',
      pi2: 'confirmed',
      pi3: 'confirmed',
      pi4: 'confirmed',
      pi5: 'confirmed',
      pi6: 'confirmed',
      pi7: 'confirmed',
      pi8: 'confirmed',
      pi9: 'confirmed',
      pi10: expect.stringMatching(/^FAILED PIDEPLOY_SSH_/u) as unknown as string,
    });
    expect(result?.results.find((host) => host.host === 'pi10')?.error?.message).toMatch(/refused|connect/iu);

    // Built once per distinct configuration: two toplevel builds for nine deployed hosts.
    const toplevels = new Set(result?.results.filter((host) => host.ok).map((host) => host.toplevel));
    expect(toplevels.size).toBe(2);
    const builtBy = lines.filter((line) => line.event?.type === 'build-start').map((line) => line.event?.host);
    expect(builtBy).toHaveLength(2);
    const owners = new Set(result?.results.filter((host) => host.ok).map((host) => host.sharedBuildWith ?? host.host));
    expect(owners.size).toBe(2);
    const kiosk = result?.results.find((host) => host.host === 'pi9');
    expect(kiosk?.sharedBuildWith).toBeUndefined();

    // --parallel 5: never more than five hosts in flight, and really five at once at some point.
    let inFlight = 0;
    let most = 0;
    for (const line of lines) {
      if (line.event?.type === 'phase-start' && line.event.phase === 'connect') inFlight += 1;
      most = Math.max(most, inFlight);
      if (line.event?.type === 'phase-end' && (line.event.phase === 'activate' || line.event.host === 'pi10')) inFlight -= 1;
    }
    expect(most).toBe(5);

    // Every deployed host runs its system and has its bundle GC-rooted; pi9 got the kiosk file.
    for (const host of result?.results.filter((item) => item.ok) ?? []) {
      expect((await labExec(host.host, ['readlink', '/run/current-system'])).stdout.trim()).toBe(host.toplevel);
      expect((await labExec(host.host, ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(host.bundle);
    }
    expect((await labExec('pi9', ['cat', '/etc/kiosk'])).stdout.trim()).toBe('on');
    expect((await labExec('pi2', ['test', '-e', '/etc/kiosk'])).exitCode).not.toBe(0);
    // pi10 is untouched (its SSH port was wrong, its store got nothing).
    expect((await labExec('pi10', ['test', '-e', '/run/current-system'])).exitCode).not.toBe(0);
  });

  it('prints a per-host summary table; a redeploy skips every running host', async () => {
    const run = await pideploy(['deploy', '@fleet', '--parallel', '5', '--sudo-password-stdin'], project, env);
    expect(run.code).toBe(1);
    for (const name of ['pi1', 'pi5', 'pi9']) expect(run.stdout).toMatch(new RegExp(`^${name} +skipped`, 'mu'));
    expect(run.stdout).toMatch(/^pi10 +FAILED/mu);
    expect(run.stdout).toMatch(/^pi10: .+\n {2}hint: /mu);
  });

  it('--canary goes first and, failed, leaves every other host untouched; --max-failures stops starting hosts; --failed deploys what did not succeed', async () => {
    const hostsNamed = (names: readonly string[]) => names.map((name) => status.hosts.find((host) => host.name === name)!);
    const parse = (stdout: string) =>
      stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Line);
    const outcomes = (lines: readonly Line[]) =>
      Object.fromEntries(lines.at(-1)?.result?.results.map((host) => [host.host, host.ok ? host.activation?.outcome : host.error?.code]) ?? []);

    // pi10 (down) is the canary: the other nine hosts are not even logged into, whatever --parallel allows.
    const others = hostsNamed(['pi1', 'pi2', 'pi3', 'pi4', 'pi5', 'pi6', 'pi7', 'pi8', 'pi9']);
    let loginsBefore = others.map((host) => sshLoginCount(host));
    const failedCanary = await pideploy(['deploy', '@fleet', '--canary', 'pi10', '--parallel', '5', '--sudo-password-stdin', '--json'], project, env);
    expect(failedCanary.code, failedCanary.stderr).toBe(1);
    const canaryLines = parse(failedCanary.stdout);
    expect(canaryLines.at(-1)?.result?.results.map((host) => host.host)).toEqual(['pi10', 'pi1', 'pi2', 'pi3', 'pi4', 'pi5', 'pi6', 'pi7', 'pi8', 'pi9']);
    expect(outcomes(canaryLines)).toEqual({
      pi10: expect.stringMatching(/^PIDEPLOY_SSH_/u) as unknown as string,
      ...Object.fromEntries(others.map((host) => [host.name, 'PIDEPLOY_HOST_NOT_STARTED'])),
    });
    expect(canaryLines.at(-1)?.result?.results.find((host) => host.host === 'pi1')?.error?.message).toBe('pi1 was not started: the canary pi10 failed');
    expect(canaryLines.filter((line) => line.event?.type === 'phase-start' && line.event.phase === 'connect').map((line) => line.event?.host)).toEqual(['pi10']);
    expect(others.map((host) => sshLoginCount(host))).toEqual(loginsBefore);
    expect(canaryLines.filter((line) => line.event?.type === 'log' && (line.event as { message?: string }).message?.startsWith('not starting')).map((line) => (line.event as { message?: string }).message)).toEqual([
      'not starting more hosts: the canary pi10 failed',
    ]);

    // A canary that succeeds: it finishes before any other host starts, then the rest go five at a time.
    const goodCanary = await pideploy(['deploy', 'pi2', 'pi3', 'pi1', '--canary', '@canary', '--parallel', '5', '--sudo-password-stdin', '--json'], project, env);
    expect(goodCanary.code, goodCanary.stderr).toBe(0);
    const goodLines = parse(goodCanary.stdout);
    expect(outcomes(goodLines)).toEqual({ pi1: 'skipped', pi2: 'skipped', pi3: 'skipped' });
    const order = goodLines
      .filter((line) => line.event?.type === 'phase-start' || line.event?.type === 'phase-end')
      .filter((line) => line.event?.host !== undefined)
      .map((line) => `${line.event?.host} ${line.event?.type}`);
    const lastOfCanary = order.lastIndexOf('pi1 phase-end');
    expect(order.findIndex((entry) => !entry.startsWith('pi1 '))).toBeGreaterThan(lastOfCanary);

    // --max-failures 1, one host at a time (file order): pi4 deploys, pi5 (off, in a copy of
    // pideploy.json) fails, pi6 and pi7 are not started.
    const cappedConfig = JSON.parse(readFileSync(path.join(project, 'pideploy.json'), 'utf8')) as { hosts: Record<string, { target: string }> };
    cappedConfig.hosts['pi5']!.target = `deploy@${hostsNamed(['pi5'])[0]!.address}:2`;
    await writeFile(path.join(project, 'pi5-off.json'), JSON.stringify(cappedConfig));
    const watched = hostsNamed(['pi4', 'pi6', 'pi7']);
    loginsBefore = watched.map((host) => sshLoginCount(host));
    const capped = await pideploy(['deploy', 'pi4', 'pi5', 'pi6', 'pi7', '--max-failures', '1', '--config', path.join(project, 'pi5-off.json'), '--sudo-password-stdin'], project, env);
    expect(capped.code, capped.stderr).toBe(1);
    expect(capped.stdout).toMatch(/^pi4 +skipped/mu);
    expect(capped.stdout).toMatch(/^pi5 +FAILED/mu);
    expect(capped.stdout).toMatch(/^pi6 +not run/mu);
    expect(capped.stdout).toContain('not started: pi6, pi7 (1 host failed (pi5), the most allowed (max failures 1))\n  hint: once the failed hosts are fixed: pideploy deploy pi6 pi7');
    const loginsAfter = watched.map((host) => sshLoginCount(host));
    expect(loginsAfter[0]).toBeGreaterThan(loginsBefore[0]!);
    expect(loginsAfter.slice(1)).toEqual(loginsBefore.slice(1));
    expect(capped.stdout).toMatch(/\nagain for the hosts that did not succeed: pideploy deploy --failed\n$/u);

    // pideploy.json's deploy section: canary @canary (pi1, off in this copy) and five at a time;
    // --no-canary skips it for one run.
    const canaryConfig = JSON.parse(readFileSync(path.join(project, 'pideploy.json'), 'utf8')) as { hosts: Record<string, { target: string }>; deploy?: unknown };
    canaryConfig.hosts['pi1']!.target = `deploy@${hostsNamed(['pi1'])[0]!.address}:2`;
    canaryConfig.deploy = { canary: '@canary', parallel: 5 };
    await writeFile(path.join(project, 'pi1-off.json'), JSON.stringify(canaryConfig));
    loginsBefore = hostsNamed(['pi2', 'pi3']).map((host) => sshLoginCount(host));
    const configured = await pideploy(['deploy', 'pi1', 'pi2', 'pi3', '--config', path.join(project, 'pi1-off.json'), '--sudo-password-stdin', '--json'], project, env);
    expect(configured.code).toBe(1);
    expect(outcomes(parse(configured.stdout))).toEqual({ pi1: 'PIDEPLOY_SSH_UNREACHABLE', pi2: 'PIDEPLOY_HOST_NOT_STARTED', pi3: 'PIDEPLOY_HOST_NOT_STARTED' });
    expect(hostsNamed(['pi2', 'pi3']).map((host) => sshLoginCount(host))).toEqual(loginsBefore);
    const noCanary = await pideploy(['deploy', 'pi1', 'pi2', 'pi3', '--no-canary', '--config', path.join(project, 'pi1-off.json'), '--sudo-password-stdin', '--json'], project, env);
    expect(noCanary.code).toBe(1);
    expect(outcomes(parse(noCanary.stdout))).toEqual({ pi1: 'PIDEPLOY_SSH_UNREACHABLE', pi2: 'skipped', pi3: 'skipped' });
    // deploy.parallel 5: the three hosts were under way at once.
    let inFlight = 0;
    let most = 0;
    for (const line of parse(noCanary.stdout)) {
      if (line.event?.type === 'phase-start' && line.event.phase === 'connect') inFlight += 1;
      most = Math.max(most, inFlight);
      if (line.event?.type === 'phase-end' && (line.event.phase === 'activate' || line.event.host === 'pi1')) inFlight -= 1;
    }
    expect(most).toBe(3);
    // Hosts that are not canaries get no canary phase: pi2 alone deploys at once.
    const withoutCanary = await pideploy(['deploy', 'pi2', '--config', path.join(project, 'pi1-off.json'), '--sudo-password-stdin'], project, env);
    expect(withoutCanary.code, withoutCanary.stderr).toBe(0);

    // --failed: the hosts whose last deployment did not succeed (failed or held back), from
    // .pideploy/deployments.json: pi1 and pi5 (off in the copies), pi6-pi9 (held back), pi10 (down).
    const record = JSON.parse(readFileSync(path.join(project, '.pideploy', 'deployments.json'), 'utf8')) as { version: number; hosts: Record<string, { ok: boolean; code?: string }> };
    expect(record.version).toBe(1);
    // The state directory keeps itself out of git (GC roots, cache keys, this record).
    expect(readFileSync(path.join(project, '.pideploy', '.gitignore'), 'utf8')).toMatch(/^\*$/mu);
    expect(Object.entries(record.hosts).filter(([, host]) => !host.ok).map(([name, host]) => `${name} ${host.code}`).sort()).toEqual([
      'pi1 PIDEPLOY_SSH_UNREACHABLE',
      'pi10 PIDEPLOY_SSH_UNREACHABLE',
      'pi5 PIDEPLOY_SSH_UNREACHABLE',
      'pi6 PIDEPLOY_HOST_NOT_STARTED',
      'pi7 PIDEPLOY_HOST_NOT_STARTED',
      'pi8 PIDEPLOY_HOST_NOT_STARTED',
      'pi9 PIDEPLOY_HOST_NOT_STARTED',
    ]);
    const again = await pideploy(['deploy', '--failed', '--parallel', '5', '--sudo-password-stdin', '--json'], project, env);
    expect(again.code, again.stderr).toBe(1);
    expect(outcomes(parse(again.stdout))).toEqual({
      pi1: 'skipped',
      pi5: 'skipped',
      pi6: 'skipped',
      pi7: 'skipped',
      pi8: 'skipped',
      pi9: 'skipped',
      pi10: expect.stringMatching(/^PIDEPLOY_SSH_/u) as unknown as string,
    });
    // Among the hosts named, none failed last time: nothing to do, and no login.
    loginsBefore = hostsNamed(['pi1', 'pi5']).map((host) => sshLoginCount(host));
    const none = await pideploy(['deploy', 'pi1', 'pi5', '--failed', '--sudo-password-stdin'], project, env);
    expect([none.code, none.stdout]).toEqual([0, '']);
    expect(none.stderr).toMatch(/no selected host failed its last deployment .*deployments\.json.*: nothing to deploy/u);
    expect(hostsNamed(['pi1', 'pi5']).map((host) => sshLoginCount(host))).toEqual(loginsBefore);
  });

  it('--target reaches a host at another address this time, pideploy.json unchanged', async () => {
    const pi10 = status.hosts.find((host) => host.name === 'pi10')!;
    const configText = readFileSync(path.join(project, 'pideploy.json'), 'utf8');
    const reached = await pideploy(['deploy', 'pi10', '--target', `deploy@${pi10.address}`, '--sudo-password-stdin'], project, env);
    expect(reached.code, reached.stderr).toBe(0);
    expect(reached.stdout).toMatch(/^pi10 +confirmed/mu);
    expect(readFileSync(path.join(project, 'pideploy.json'), 'utf8')).toBe(configText);
    // Without it, pi10 is still reached where pideploy.json says (nothing listens there).
    const unreached = await pideploy(['deploy', 'pi10', '--sudo-password-stdin'], project, env);
    expect(unreached.code).toBe(1);
    expect(unreached.stdout).toMatch(/^pi10 +FAILED/mu);
  });

  it('rolls the fleet back: each host to its previous generation, five at a time, a host that is down reported; --to with several hosts is refused untouched', async () => {
    const fleet = status.hosts.filter((host) => host.name !== 'pi10');
    const loginsBefore = fleet.map((host) => sshLoginCount(host));
    const refused = await pideploy(['rollback', '--on', '@fleet', '--to', '3', '--sudo-password-stdin'], project, env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^pideploy: --to 3 is one host's generation, but 10 hosts are selected \(pi1, pi2, /u);
    expect(fleet.map((host) => sshLoginCount(host))).toEqual(loginsBefore);

    // A second release, so that each host has a generation to go back to.
    await writeFile(path.join(project, 'configuration.nix'), '{ ... }: { imports = [ ./common.nix ]; environment.etc."release".text = "2"; }\n');
    await writeFile(path.join(project, 'kiosk.nix'), '{ ... }: { imports = [ ./common.nix ]; environment.etc."kiosk".text = "on"; environment.etc."release".text = "2"; }\n');
    const released = await pideploy(['deploy', '@fleet', '--parallel', '5', '--sudo-password-stdin'], project, env);
    expect(released.code).toBe(1);
    expect(released.stdout.match(/^pi\d+ +confirmed/gmu)).toHaveLength(9);
    const systemOf = async (name: string, link: string) => (await labExec(name, ['readlink', '-f', link])).stdout.trim();
    const before = await Promise.all(fleet.map((host) => systemOf(host.name, '/run/current-system')));
    const releaseTwoLink = (await labExec('pi2', ['readlink', '/nix/var/nix/profiles/system'])).stdout.trim();
    const deployed = await pideploy(['status', 'pi2', '--short'], project, env);
    expect(deployed.stdout).toMatch(/^pi2 .* ok$/mu);
    const run = await pideploy(['rollback', '--on', '@fleet', '--parallel', '5', '--sudo-password-stdin', '--json'], project, env);
    expect(run.code, run.stderr).toBe(1);
    const result = (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { results: { host: string; ok: boolean; rollback?: { generation: number; runningSystem: string; bundle?: string }; error?: { code: string } }[] } }).result;
    expect(result.results.map((host) => [host.host, host.ok])).toEqual([...fleet.map((host) => [host.name, true]), ['pi10', false]]);
    expect(result.results.at(-1)?.error?.code).toMatch(/^PIDEPLOY_SSH_/u);
    for (const [index, host] of fleet.entries()) {
      const rolled = result.results[index]?.rollback;
      const running = await systemOf(host.name, '/run/current-system');
      // Running an earlier system: the profile's generation it reported, not the deployed one.
      expect(running).not.toBe(before[index]);
      expect(rolled?.runningSystem).toBe(running);
      expect(await systemOf(host.name, `/nix/var/nix/profiles/system-${rolled?.generation}-link`)).toBe(running);
      // The GC root followed: it names the bundle that deployed the system the host went back to (release 1's), not the one it left.
      expect(rolled?.bundle).toMatch(/^\/nix\/store\/[0-9a-z]{32}-/u);
      expect(await systemOf(host.name, '/etc/nixos/current-configuration')).toBe(rolled?.bundle);
      expect(await systemOf(host.name, `${rolled?.bundle}/toplevel`)).toBe(running);
    }
    expect((await pideploy(['status', 'pi2', '--short'], project, env)).stdout).toMatch(/^pi2 .* ok$/mu);
    // Switched back to release 2 by hand (not by pideploy), its GC root names release 1's bundle: status says so.
    const byHand = await labExec('pi2', ['sh', '-c', `nix-env -p /nix/var/nix/profiles/system --switch-generation "$1" && /nix/var/nix/profiles/system/bin/switch-to-configuration switch`, 'by-hand', /^system-(\d+)-link$/u.exec(releaseTwoLink)?.[1] ?? '?']);
    expect(byHand.exitCode, byHand.stderr).toBe(0);
    const left = await pideploy(['status', 'pi2', '--short'], project, env);
    expect(left.code, left.stderr).toBe(0);
    expect(left.stdout).toMatch(/^pi2 .* not on its deployed bundle's system \(rolled back or switched by hand since\)$/mu);
    // Human output: a line per host, the failed one with its hint (pi1 deployed again, so it has a generation to go back from).
    const redeployed = await pideploy(['deploy', 'pi1', '--sudo-password-stdin'], project, env);
    expect(redeployed.code, redeployed.stderr).toBe(0);
    const again = await pideploy(['rollback', 'pi1', 'pi10', '--sudo-password-stdin'], project, env);
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/^pi1: now on generation \d+ \(\/nix\/store\/\S+\)\npi10: FAILED: .+\n {2}hint: /u);
  });
});
