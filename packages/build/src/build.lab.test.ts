import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError, createBaseContext, createCollectingReporter } from '@pideploy/core';
import { labDown, labExec, labLocalNixEnv, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildToplevel, dryBuildToplevel, type BuildToplevelRequest } from './build.js';
import { doctor } from './doctor.js';
import { renderBuildExpression } from './expression.js';

const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-build-'));
const nixEnv = labLocalNixEnv(path.join(workDir, 'cache'));
const env = { ...process.env, ...nixEnv };
const run = (argv: string[], extraEnv: Record<string, string> = {}) =>
  execFileSync(argv[0]!, argv.slice(1), { env: { ...env, ...extraEnv }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

let lab: LabStatus;
const write = (name: string, text: string): string => {
  const file = path.join(workDir, name);
  writeFileSync(file, text);
  return file;
};

function request(configuration: string, overrides: Partial<BuildToplevelRequest> = {}): BuildToplevelRequest {
  return {
    host: 'pi1',
    pinsFile: path.join(workDir, 'pins.nix'),
    configuration: path.join(workDir, configuration),
    system: 'aarch64-linux',
    mode: 'emulated',
    stateDir: path.join(workDir, '.pideploy'),
    env: nixEnv,
    ...overrides,
  };
}

async function failure(promise: Promise<unknown>): Promise<PideployError> {
  try {
    await promise;
  } catch (error) {
    if (PideployError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected a PideployError');
}

describeLab('buildToplevel against real nix and the lab', () => {
  beforeAll(async () => {
    lab = await labUp({ hosts: 1 });
    const url = lab.nixpkgs!.revisions[1]!.url;
    const sha256 = run(['nix-prefetch-url', '--unpack', '--name', 'source', url]).split('\n').pop()!;
    write('pins.nix', `{\n  nixpkgs = builtins.fetchTarball { url = "${url}"; sha256 = "${sha256}"; };\n}\n`);
    // A unique label so the first build really builds (the lab's other tests share the store).
    write('hw.nix', `{ ... }: { time.timeZone = "UTC"; environment.etc."pideploy-test".text = "${path.basename(workDir)}"; }\n`);
    write('configuration.nix', '{ pkgs, ... }: {\n  imports = [ ./hw.nix ];\n  networking.hostName = "pi1";\n  environment.systemPackages = [ pkgs.hello ];\n}\n');
  });
  afterAll(async () => {
    if (process.env['PIDEPLOY_KEEP_LAB'] === undefined) await labDown();
  });

  it('builds the aarch64 system under emulation with progress, then a no-change rebuild builds nothing', async () => {
    const reporter = createCollectingReporter();
    const result = await buildToplevel(request('configuration.nix'), createBaseContext({ reporter }));
    expect(readFileSync(path.join(result.outPath, 'build-machine'), 'utf8').trim()).toBe('aarch64');
    expect(readFileSync(path.join(result.outPath, 'system'), 'utf8')).toBe('aarch64-linux');
    const start = reporter.events.find((event) => event.type === 'build-start');
    expect(start).toMatchObject({ derivationsToBuild: expect.any(Number) });
    expect((start as { derivationsToBuild: number }).derivationsToBuild).toBeGreaterThan(0);
    const progress = reporter.events.filter((event) => event.type === 'build-progress');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.some((event) => 'current' in event && event.current?.startsWith('nixos-system-pi1'))).toBe(true);
    expect(reporter.events.at(-1)).toMatchObject({ type: 'build-end', outPath: result.outPath });
    expect(run(['readlink', path.join(workDir, '.pideploy/gcroots/pi1-toplevel')])).toBe(result.outPath);

    // Second run: nothing built, and the overhead beyond nix's own evaluation stays small.
    const again = createCollectingReporter();
    const began = Date.now();
    const second = await buildToplevel(request('configuration.nix'), createBaseContext({ reporter: again }));
    const ours = Date.now() - began;
    const plainBegan = Date.now();
    run(['nix-build', '--no-out-link', '-E', result.expression]);
    const plain = Date.now() - plainBegan;
    expect(second.outPath).toBe(result.outPath);
    expect(second.built).toEqual([]);
    expect(again.events.find((event) => event.type === 'build-start')).toMatchObject({ derivationsToBuild: 0 });
    expect(ours - plain).toBeLessThan(2000);
  });

  it('prints an expression that plain nix-build turns into the same path', async () => {
    const result = await buildToplevel(request('configuration.nix'));
    const file = write('printed.nix', renderBuildExpression({ pinsFile: path.join(workDir, 'pins.nix'), configuration: path.join(workDir, 'configuration.nix'), system: 'aarch64-linux', mode: 'emulated' }));
    expect(readFileSync(file, 'utf8').replace(/^#.*$/gmu, '')).not.toMatch(/<nixpkgs>|NIX_PATH/u);
    expect(run(['nix-build', '--no-out-link', file], { NIX_PATH: '' })).toBe(result.outPath);
  });

  it('cross-builds on this machine with nixpkgs.buildPlatform/hostPlatform', async () => {
    const result = await buildToplevel(request('configuration.nix', { mode: 'cross', buildPlatform: 'x86_64-linux', host: 'pi1-cross' }));
    expect(readFileSync(path.join(result.outPath, 'build-machine'), 'utf8').trim()).toBe('x86_64');
    expect(readFileSync(path.join(result.outPath, 'system'), 'utf8')).toBe('aarch64-linux');
    const emulated = await buildToplevel(request('configuration.nix'));
    expect(result.outPath).not.toBe(emulated.outPath);
  });

  it('builds on a lab host acting as the aarch64 remote builder, never here', async () => {
    // The lab host stands in for an aarch64 Pi: its nix accepts aarch64-linux (qemu binfmt is global).
    await labExec('pi1', ['sh', '-c', 'grep -q "^extra-platforms" /etc/nix/nix.conf || echo "extra-platforms = aarch64-linux" >> /etc/nix/nix.conf']);
    write('remote.nix', `{ pkgs, ... }: { imports = [ ./configuration.nix ]; environment.etc."remote".text = "${Date.now()}"; }\n`);
    const reporter = createCollectingReporter();
    const result = await buildToplevel(
      request('remote.nix', {
        mode: 'builders',
        host: 'pi1-remote',
        builders: [{ uri: 'ssh://root@pi1', systems: ['aarch64-linux'] }],
        env: { ...nixEnv, NIX_SSHOPTS: lab.env['NIX_SSHOPTS'] },
      }),
      createBaseContext({ reporter }),
    );
    expect(result.built.length).toBeGreaterThan(0);
    expect(result.built.every((build) => build.machine === 'ssh://root@pi1')).toBe(true);
    expect(reporter.events.some((event) => event.type === 'log' && event.message.includes('on ssh://root@pi1'))).toBe(true);
    const onBuilder = await labExec('pi1', ['nix-store', '--check-validity', result.outPath]);
    expect(onBuilder.exitCode).toBe(0);
    expect(readFileSync(path.join(result.outPath, 'build-machine'), 'utf8').trim()).toBe('aarch64');
  });

  it('turns bad input into clear errors', async () => {
    write('unpinned.nix', '{ ... }: let p = import <nixpkgs> { }; in { networking.hostName = p.lib.version; }\n');
    const unpinned = await failure(buildToplevel(request('unpinned.nix')));
    expect(unpinned.code).toBe('PIDEPLOY_BUILD_UNPINNED');
    expect(unpinned.message).toContain('unpinned.nix:1:');
    expect(unpinned.hint).toContain('pins.nix');

    write('syntax.nix', '{ ... }: {\n  networking.hostName = "pi1";\n  x = ;\n}\n');
    const syntax = await failure(buildToplevel(request('syntax.nix')));
    expect(syntax.code).toBe('PIDEPLOY_BUILD_EVAL_FAILED');
    expect(syntax.message).toMatch(/syntax error.*syntax\.nix:3:7/u);

    write('option.nix', '{ ... }: { foo.bar = 1; }\n');
    const option = await failure(buildToplevel(request('option.nix')));
    expect(option.message).toContain("The option `foo' does not exist");
    expect(option.message).toContain('option.nix');

    write('broken.nix', '{ pkgs, ... }: { environment.systemPackages = [ (pkgs.runCommand "broken-pkg" { } "echo first; echo last-words; exit 3") ]; }\n');
    const reporter = createCollectingReporter();
    const broken = await failure(buildToplevel(request('broken.nix'), createBaseContext({ reporter })));
    expect(broken.code).toBe('PIDEPLOY_BUILD_FAILED');
    expect(broken.message).toContain('broken-pkg');
    expect(broken.commandFailure?.stderrTail).toContain('last-words');
    expect(broken.hint).toContain('nix log');

    // No extra-platforms: the doctor's fix, before any build (the evaluation running meanwhile is stopped, and its result does not matter).
    const withoutEmulation = { ...nixEnv, NIX_CONFIG: (nixEnv['NIX_CONFIG'] ?? '').replace('extra-platforms = aarch64-linux', '') };
    const noEmulation = await failure(buildToplevel(request('configuration.nix', { env: withoutEmulation })));
    expect(noEmulation.code).toBe('PIDEPLOY_BUILD_NO_EMULATION');
    expect(noEmulation.hint).toContain('pideploy doctor');
    expect(noEmulation.hint).toContain('boot.binfmt.emulatedSystems');
    expect(noEmulation.hint).toContain('extra-platforms = aarch64-linux');
  });

  it('passes the Nix settings through: cores reach the builder, -L shows its lines, --keep-going names every failure, --show-trace the whole trace', async () => {
    // A new nonce each run, so the probes really build (the lab's other tests share the store).
    const nonce = `${path.basename(workDir)}-${Date.now()}`;
    write('probe.nix', `{ pkgs, ... }: { imports = [ ./configuration.nix ]; environment.etc."cores".source = pkgs.runCommand "cores-probe" { nonce = "${nonce}"; } "echo probe-line cores=$NIX_BUILD_CORES; echo $NIX_BUILD_CORES > $out"; }\n`);
    const reporter = createCollectingReporter();
    const probed = await buildToplevel(
      request('probe.nix', { host: 'pi1-probe', nixOptions: { cores: 3, printBuildLogs: true, settings: { 'max-silent-time': '600' } } }),
      createBaseContext({ reporter }),
    );
    expect(readFileSync(path.join(probed.outPath, 'etc', 'cores'), 'utf8').trim()).toBe('3');
    expect(reporter.events).toContainEqual({ type: 'log', level: 'info', host: 'pi1-probe', message: 'cores-probe> probe-line cores=3' });
    // Later builds of this host (its bundle) get the same settings.
    expect(probed.nixArguments).toEqual(['--cores', '3', '--option', 'max-silent-time', '600']);

    // Two failing derivations and one that builds: --keep-going builds it and names both failures; without -L its lines stay in Nix's log.
    write('failing.nix', `{ pkgs, ... }: { imports = [ ./configuration.nix ]; environment.systemPackages = [ (pkgs.runCommand "fails-first" { nonce = "${nonce}"; } "exit 3") (pkgs.runCommand "fails-second" { nonce = "${nonce}"; } "exit 4") (pkgs.runCommand "quiet-probe" { nonce = "${nonce}"; } "echo quiet-line; mkdir $out") ]; }\n`);
    const quiet = createCollectingReporter();
    const failed = await failure(buildToplevel(request('failing.nix', { host: 'pi1-failing', nixOptions: { keepGoing: true } }), createBaseContext({ reporter: quiet })));
    expect(failed.code).toBe('PIDEPLOY_BUILD_FAILED');
    expect(failed.message).toMatch(/^building fails-(first|second) failed \(.*; 1 more failed: fails-(first|second)$/u);
    expect(failed.message).toContain('fails-first');
    expect(failed.message).toContain('fails-second');
    expect(quiet.events.some((event) => event.type === 'log' && event.message.includes('quiet-line'))).toBe(false);
    expect(quiet.events.some((event) => event.type === 'build-progress' && event.current === 'quiet-probe')).toBe(true);

    // An error deep in a function: Nix's advice without the trace, the whole trace (and the location) with it.
    write('trace.nix', `{ ... }: let pick = name: throw "no wifi for \${name}"; in { imports = [ ./configuration.nix ]; environment.etc."wifi".text = pick "pi1"; }\n`);
    const short = createCollectingReporter();
    const untraced = await failure(buildToplevel(request('trace.nix', { host: 'pi1-trace' }), createBaseContext({ reporter: short })));
    expect(untraced.code).toBe('PIDEPLOY_BUILD_EVAL_FAILED');
    expect(untraced.message).toContain('no wifi for pi1');
    expect(untraced.hint).toBe("Nix's message is above; rerun with --show-trace to see where the error comes from");
    expect(short.events.some((event) => event.type === 'log' && event.message.includes("while evaluating 'pick'"))).toBe(false);
    const long = createCollectingReporter();
    const traced = await failure(buildToplevel(request('trace.nix', { host: 'pi1-trace', nixOptions: { showTrace: true } }), createBaseContext({ reporter: long })));
    expect(traced.message).toContain('no wifi for pi1');
    expect(traced.message).toContain('trace.nix:1:');
    const trace = long.events.find((event) => event.type === 'log' && event.message.includes("while evaluating 'pick'"));
    expect(trace).toBeDefined();
    // The whole trace, not the last 25 lines: it goes from the error up to the configuration's modules.
    expect((trace as { message: string }).message).toMatch(/^error: no wifi for pi1/mu);
  });

  it('dry-builds: says what a build would build, building and rooting nothing; after the build, that it is built', async () => {
    write('dry.nix', `{ pkgs, ... }: { imports = [ ./configuration.nix ]; environment.etc."dry".text = "${path.basename(workDir)}-${Date.now()}"; }\n`);
    const stateDir = path.join(workDir, 'dry-state');
    const dry = await dryBuildToplevel(request('dry.nix', { host: 'pi1-dry', stateDir }));
    expect(dry.built).toBe(false);
    expect(dry.derivationsToBuild.map((drvPath) => path.basename(drvPath).slice(33))).toContain('etc-dry.drv');
    expect(dry.derivationsToBuild).toContain(dry.drvPath);
    expect(spawnSync('nix-store', ['--check-validity', dry.outPath], { env }).status).not.toBe(0);
    expect(existsSync(stateDir)).toBe(false);

    const built = await buildToplevel(request('dry.nix', { host: 'pi1-dry' }));
    expect(built.outPath).toBe(dry.outPath);
    expect(built.drvPath).toBe(dry.drvPath);
    const again = await dryBuildToplevel(request('dry.nix', { host: 'pi1-dry' }));
    expect(again).toMatchObject({ built: true, derivationsToBuild: [], pathsToFetch: [], outPath: built.outPath });

    // An evaluation error is the same error a build gives.
    write('dry-broken.nix', '{ ... }: { x = ; }\n');
    const broken = await failure(dryBuildToplevel(request('dry-broken.nix')));
    expect(broken.code).toBe('PIDEPLOY_BUILD_EVAL_FAILED');
  });

  it('doctor reports this machine ready, and pinpoints a missing extra-platforms', async () => {
    const ready = await doctor({ env: nixEnv });
    expect(ready.ok).toBe(true);
    expect(ready.checks.find((check) => check.id === 'binfmt')?.status).toBe('ok');
    const missing = await doctor({ env: { ...nixEnv, NIX_CONFIG: (nixEnv['NIX_CONFIG'] ?? '').replace('extra-platforms = aarch64-linux', '') } });
    expect(missing.ok).toBe(false);
    const check = missing.checks.find((item) => item.id === 'extra-platforms');
    expect(check?.status).toBe('fail');
    expect(check?.fix?.debian).toContain('/etc/nix/nix.conf');
    const builders = await doctor({ env: { ...nixEnv, NIX_SSHOPTS: lab.env['NIX_SSHOPTS'] }, mode: 'builders', builders: [{ uri: 'ssh://root@pi1', systems: ['aarch64-linux'] }] });
    expect(builders.checks.find((item) => item.id === 'builders')?.status).toBe('ok');
  });
});
