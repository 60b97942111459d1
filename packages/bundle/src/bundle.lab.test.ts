import { execFileSync } from 'node:child_process';
import { existsSync, lutimesSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PideployError } from '@pideploy/core';
import { labDown, labExec, labLocalNixEnv, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BATCH_ROOT_MIN_AGE_MS, buildBundle, buildBundles, bundleBatchKey, instantiateBundles, planBundle, renderPlannedBundleExpression, type BundleRequest } from './bundle.js';

const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-bundle-'));
const nixEnv = labLocalNixEnv(path.join(workDir, 'cache'));
let lab: LabStatus;
const run = (argv: string[], extraEnv: Record<string, string> = {}) =>
  // (--print-roots lists every root on the machine: more than execFileSync's 1 MiB on a busy one.)
  execFileSync(argv[0]!, argv.slice(1), { env: { ...process.env, ...nixEnv, ...lab.env, ...extraEnv }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 << 20 }).trim();
const write = (name: string, text: string): string => {
  const file = path.join(workDir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
};
/** The build stage's expression (written out here: a stage never imports another stage). */
const toplevelExpression = (configuration: string) =>
  `let pins = import ${workDir}/pins.nix; nixpkgs = pins.nixpkgs; in\n(import "\${nixpkgs}/nixos" { configuration = ${configuration}; system = "aarch64-linux"; }).config.system.build.toplevel\n`;

describeLab('bundles against real nix and a lab host', () => {
  let request: BundleRequest;
  let drvPath = '';
  beforeAll(async () => {
    lab = await labUp({ hosts: 1 });
    const url = lab.nixpkgs!.revisions[1]!.url;
    const sha256 = run(['nix-prefetch-url', '--unpack', '--name', 'source', url]).split('\n').pop()!;
    write('pins.nix', `{\n  nixpkgs = builtins.fetchTarball { url = "${url}"; sha256 = "${sha256}"; };\n}\n`);
    write('modules/hw.nix', `{ ... }: { time.timeZone = "UTC"; environment.etc."motd".source = ../files/motd; }\n`);
    write('files/motd', `bundle test ${path.basename(workDir)}\n`);
    write('configuration.nix', '{ pkgs, ... }: {\n  imports = [ ./modules/hw.nix ]; # ./not-this.nix in a comment\n  networking.hostName = "pi1";\n  environment.systemPackages = [ pkgs.hello ];\n}\n');
    drvPath = run(['nix-instantiate', '-E', toplevelExpression(`${workDir}/configuration.nix`)]);
    run(['nix-build', '--no-out-link', drvPath]);
    request = {
      host: 'pi1',
      system: 'aarch64-linux',
      buildMode: 'emulated',
      pinsFile: path.join(workDir, 'pins.nix'),
      pin: { url, sha256, rev: lab.nixpkgs!.revisions[1]!.rev },
      configuration: path.join(workDir, 'configuration.nix'),
    };
  });
  afterAll(async () => {
    if (process.env['PIDEPLOY_KEEP_LAB'] === undefined) await labDown();
  });

  it('holds configuration.nix with its local files, nixpkgs, toplevel, bin/activate and manifest.json', async () => {
    const bundle = await buildBundle({ ...request, toplevel: { drvPath }, stateDir: path.join(workDir, '.pideploy'), env: nixEnv });
    const toplevel = run(['nix-store', '-q', '--outputs', drvPath]);
    expect(readFileSync(path.join(bundle.outPath, 'configuration.nix'), 'utf8')).toContain('./modules/hw.nix');
    expect(existsSync(path.join(bundle.outPath, 'modules/hw.nix'))).toBe(true);
    expect(existsSync(path.join(bundle.outPath, 'files/motd'))).toBe(true);
    expect(readlinkSync(path.join(bundle.outPath, 'toplevel'))).toBe(toplevel);
    expect(readlinkSync(path.join(bundle.outPath, 'nixpkgs'))).toMatch(/^\/nix\/store\/[0-9a-z]{32}-source$/u);
    expect(readFileSync(path.join(bundle.outPath, 'toplevel/build-machine'), 'utf8').trim()).toBe('aarch64');
    const manifest = JSON.parse(readFileSync(path.join(bundle.outPath, 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ version: 1, host: 'pi1', system: 'aarch64-linux', buildMode: 'emulated', toplevel, pin: { url: request.pin!.url, sha256: request.pin!.sha256, rev: request.pin!.rev } });
    expect(manifest.files).toEqual(['configuration.nix', 'files/motd', 'modules/hw.nix']);
    expect(readFileSync(path.join(bundle.outPath, 'bin/activate'), 'utf8')).toMatch(/^#!\/nix\/store\/\S+\/sh\n/u);
    expect(readlinkSync(path.join(workDir, '.pideploy/gcroots/pi1-bundle'))).toBe(bundle.outPath);

    // The self-contained expression (what `pideploy build --print-expr` prints) gives the same path.
    const printed = write('bundle.nix', renderPlannedBundleExpression(await planBundle(request), toplevelExpression(`${workDir}/configuration.nix`)));
    expect(run(['nix-build', '--no-out-link', printed], { NIX_PATH: '' })).toBe(bundle.outPath);
  });

  it('builds an emulated bundle on this machine, not under qemu, with the target\'s shell in bin/activate; builders mode keeps it on the target', async () => {
    const here = JSON.parse(run(['nix-instantiate', '--eval', '-E', 'builtins.currentSystem'])) as string;
    expect(here).not.toBe('aarch64-linux');
    const systemOf = (drv: string) => (JSON.parse(run(['nix', 'show-derivation', drv])) as Record<string, { system: string }>)[drv]!.system;
    const toplevelShell = readFileSync(path.join(run(['nix-store', '-q', '--outputs', drvPath]), 'bin/switch-to-configuration'), 'utf8').split('\n')[0];
    const local = await buildBundle({ ...request, host: 'pi-local', buildPlatform: here, toplevel: { drvPath }, env: nixEnv });
    const localDrv = run(['nix-store', '-q', '--deriver', local.outPath]);
    expect(systemOf(localDrv)).toBe(here);
    // The script still runs on the Pi: its interpreter is the target's shell (the toplevel's).
    expect(readFileSync(path.join(local.outPath, 'bin/activate'), 'utf8').split('\n')[0]).toBe(toplevelShell);
    expect(toplevelShell).toMatch(/aarch64/u);
    // Without a build platform (the library's default) and in builders mode, the builder is the target's.
    const [targetDrv, buildersDrv] = await instantiateBundles(
      [await planBundle({ ...request, host: 'pi-target' }), await planBundle({ ...request, host: 'pi-builders', buildMode: 'builders', buildPlatform: here })].map((plan) => ({ plan, toplevel: { drvPath } })),
      undefined,
      nixEnv,
    );
    expect([systemOf(targetDrv!), systemOf(buildersDrv!)]).toEqual(['aarch64-linux', 'aarch64-linux']);
  });

  it('evaluates several hosts\' bundles in one nix-instantiate and builds them in one nix-build: the same derivations as each host\'s own expression', async () => {
    write('hosts/pi3.nix', '{ ... }: { imports = [ ../modules/hw.nix ]; networking.hostName = "pi3"; }\n');
    const hosts = [
      { ...request, host: 'pi2' },
      { ...request, host: 'pi3', configuration: path.join(workDir, 'hosts/pi3.nix'), projectDir: workDir },
      { ...request, host: 'pi4' },
    ];
    const plans = await Promise.all(hosts.map((host) => planBundle(host)));
    // A host with its own activation script: the script is then written per bundle, not once.
    const ownScript = await planBundle({ ...request, host: 'pi5', activateScript: '#!@shell@\necho own script for @toplevel@ in @bundle@\n' });
    const mixed = await instantiateBundles([plans[0]!, ownScript].map((plan) => ({ plan, toplevel: { drvPath } })), undefined, nixEnv);
    expect(mixed[1]).toBe(run(['nix-instantiate', write('own-script.nix', renderPlannedBundleExpression(ownScript, `import ${drvPath}`))], { NIX_PATH: '' }));
    expect(new Set(plans.map(bundleBatchKey)).size).toBe(1);
    expect(bundleBatchKey(await planBundle({ ...request, system: 'x86_64-linux' }))).not.toBe(bundleBatchKey(plans[0]!));
    const drvPaths = await instantiateBundles(plans.map((plan) => ({ plan, toplevel: { drvPath } })), undefined, nixEnv);
    expect(drvPaths).toHaveLength(3);
    for (const [index, plan] of plans.entries()) {
      const own = write(`own-${index}.nix`, renderPlannedBundleExpression(plan, `import ${drvPath}`));
      expect(run(['nix-instantiate', own], { NIX_PATH: '' })).toBe(drvPaths[index]);
    }
    // Built from the derivation alone (no evaluation), with the host's GC root; the wrapper entry works too.
    const built = await buildBundle({ ...hosts[1]!, plan: plans[1], toplevel: { drvPath }, drvPath: drvPaths[1], stateDir: path.join(workDir, '.pideploy'), env: nixEnv });
    expect(readFileSync(path.join(built.outPath, 'configuration.nix'), 'utf8')).toBe('import ./hosts/pi3.nix\n');
    expect(built.manifest).toMatchObject({ host: 'pi3', configuration: { file: 'hosts/pi3.nix' } });
    expect(readlinkSync(path.join(workDir, '.pideploy/gcroots/pi3-bundle'))).toBe(built.outPath);
    expect(run(['nix-store', '-q', '--deriver', built.outPath])).toBe(drvPaths[1]);

    // Built together: one nix-build, the same bundles, each host's root pointing at a root
    // nix-build registered; a host built alone later takes its root back and the batch root it
    // left is deleted (the GC may then take that bundle).
    const stateDir = path.join(workDir, '.pideploy-batch');
    const together = await buildBundles(
      hosts.map((host, index) => ({ ...host, plan: plans[index], toplevel: { drvPath }, drvPath: drvPaths[index], stateDir, env: nixEnv })),
    );
    expect(together.map((bundle) => run(['nix-store', '-q', '--deriver', bundle.outPath]))).toEqual(drvPaths);
    expect(together.map((bundle) => bundle.manifest.host)).toEqual(hosts.map((host) => host.host));
    const gcroots = path.join(stateDir, 'gcroots');
    const registered = run(['nix-store', '--gc', '--print-roots']).split('\n');
    const batchRoots = () => readdirSync(path.join(gcroots, 'bundles')).map((name) => path.join(gcroots, 'bundles', name));
    expect(batchRoots()).toHaveLength(3);
    for (const bundle of together) {
      expect(readlinkSync(bundle.gcRoot!)).toBe(bundle.outPath);
      // Kept by a root nix-build registered.
      const root = batchRoots().find((link) => readlinkSync(link) === bundle.outPath);
      expect(registered).toContain(`${root} -> ${bundle.outPath}`);
    }
    // pi2 built alone after a change: nix-build takes its link over; the batch root of its old bundle goes.
    write('hosts/pi2-changed.nix', '{ ... }: { imports = [ ../modules/hw.nix ]; environment.etc."changed".text = "yes"; }\n');
    const changedPlan = await planBundle({ ...hosts[0]!, configuration: path.join(workDir, 'hosts/pi2-changed.nix'), projectDir: workDir });
    const alone = await buildBundle({ ...changedPlan.request, plan: changedPlan, toplevel: { drvPath }, stateDir, env: nixEnv });
    expect(alone.outPath).not.toBe(together[0]!.outPath);
    expect(readlinkSync(alone.gcRoot!)).toBe(alone.outPath);
    expect(run(['nix-store', '--gc', '--print-roots']).split('\n')).toContain(`${alone.gcRoot} -> ${alone.outPath}`);
    // Young batch roots stay (another build may not have linked its hosts yet); old ones nobody links to go.
    expect(batchRoots()).toHaveLength(3);
    const old = new Date(Date.now() - BATCH_ROOT_MIN_AGE_MS - 60_000);
    for (const link of batchRoots()) lutimesSync(link, old, old);
    await buildBundle({ ...changedPlan.request, plan: changedPlan, toplevel: { drvPath }, stateDir, env: nixEnv });
    expect(batchRoots().map((link) => readlinkSync(link)).sort()).toEqual([together[1]!.outPath, together[2]!.outPath].sort());
  });

  it('rebuilds on the target from the bundle alone to the same toplevel, and activates by hand', async () => {
    const bundle = await buildBundle({ ...request, toplevel: { drvPath }, env: nixEnv });
    const toplevel = run(['nix-store', '-q', '--outputs', drvPath]);
    run(['nix-copy-closure', '--to', 'root@pi1', bundle.outPath]);
    // What a person does on the Pi: resolve $bundle/nixpkgs (a path through the bundle's symlink
    // would be a path inside another store path), then evaluate $bundle/configuration.nix with it.
    const script = 'n=$(readlink -f "$1/nixpkgs"); NIX_PATH= nix-instantiate --option substituters "" -E "(import $n/nixos { configuration = $1/configuration.nix; system = \\"aarch64-linux\\"; }).config.system.build.toplevel"';
    const onTarget = await labExec('pi1', ['sh', '-c', script, 'rebuild', bundle.outPath]);
    expect(onTarget.stderr).not.toMatch(/error/u);
    expect(onTarget.stdout.trim().split('\n').pop()).toBe(drvPath);
    const dry = await labExec('pi1', ['nix-store', '--realise', '--dry-run', drvPath]);
    expect(dry.stderr).not.toMatch(/will be built/u);

    const activated = await labExec('pi1', [`${bundle.outPath}/bin/activate`, 'switch']);
    expect(activated.exitCode).toBe(0);
    expect((await labExec('pi1', ['readlink', '-f', '/nix/var/nix/profiles/system'])).stdout.trim()).toBe(toplevel);
    expect((await labExec('pi1', ['readlink', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(bundle.outPath);
    // It notes which bundle deployed that system, as pideploy's activation does, for a rollback to it later.
    expect((await labExec('pi1', ['cat', `/nix/var/pideploy/bundles/${path.basename(toplevel)}`])).stdout).toBe(`${bundle.outPath}\n`);
    const usage = await labExec('pi1', [`${bundle.outPath}/bin/activate`, 'explode']);
    expect(usage.exitCode).toBe(2);
  });

  it('names the importing file of a missing import, and refuses files outside the project', async () => {
    write('broken/configuration.nix', '{ ... }: {\n  imports = [\n    ./missing.nix\n  ];\n}\n');
    const missing = await planBundle({ ...request, configuration: path.join(workDir, 'broken/configuration.nix') }).catch((error: unknown) => error);
    expect(PideployError.isInstance(missing) && missing.code).toBe('PIDEPLOY_BUNDLE_MISSING_FILE');
    expect((missing as Error).message).toContain(`${workDir}/broken/configuration.nix:3 refers to ./missing.nix`);
    write('inner/configuration.nix', '{ ... }: { imports = [ ../modules/hw.nix ]; }\n');
    const outside = await planBundle({ ...request, configuration: path.join(workDir, 'inner/configuration.nix'), projectDir: path.join(workDir, 'inner') }).catch((error: unknown) => error);
    expect(PideployError.isInstance(outside) && outside.code).toBe('PIDEPLOY_BUNDLE_OUTSIDE_PROJECT');
    const allowed = await planBundle({ ...request, configuration: path.join(workDir, 'inner/configuration.nix'), projectDir: path.join(workDir, 'inner'), allowOutsideProject: true });
    expect(allowed.files.files).toEqual(['files/motd', 'inner/configuration.nix', 'modules/hw.nix']);
    expect(allowed.manifest.configuration.file).toBe('inner/configuration.nix');
  });
});
