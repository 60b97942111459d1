import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labExec, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount, sudoCommandsOf, sudoLogFrom, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy, runBuiltPideployWithLabSudo } from '../testing/built-cli.js';


const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideploy(args, { cwd, env });

describeLab('pideploy init --lab && pideploy build pi1 (real nix, the lab mini-nixpkgs)', () => {
  let status: LabStatus;
  let workDir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    status = await labUp({ hosts: 1 });
    env = { ...process.env, ...status.env };
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-init-'));
  });
  afterAll(async () => {
    await labDown();
  });

  it('scaffolds a project whose first host builds into a bundle with all its parts', async () => {
    const project = path.join(workDir, 'my-pi');
    const init = await pideploy(['init', project, '--lab'], workDir, process.env);
    expect(init.stderr).not.toContain('pideploy:');
    expect(init.code).toBe(0);
    expect((await readdir(project)).sort()).toEqual(['configuration.nix', 'hardware-configuration.nix', 'pideploy.json', 'pins.json', 'pins.nix']);
    const config = JSON.parse(readFileSync(path.join(project, 'pideploy.json'), 'utf8')) as { hosts: Record<string, { target: string; sshConfig: string }> };
    expect(config.hosts['pi1']).toMatchObject({ target: 'deploy@pi1', sshConfig: status.sshConfig });
    const pins = JSON.parse(readFileSync(path.join(project, 'pins.json'), 'utf8')) as { pins: { nixpkgs: { rev: string } } };
    expect(pins.pins.nixpkgs.rev).toBe(status.nixpkgs?.branches['nixos-24.05']);

    const build = await pideploy(['build', 'pi1'], project, env);
    expect(build.stderr).not.toContain('pideploy:');
    expect(build.code).toBe(0);
    const bundle = build.stdout.trim();
    expect(bundle).toMatch(/^\/nix\/store\/[a-z0-9]{32}-pideploy-bundle-pi1$/u);
    for (const part of ['configuration.nix', 'hardware-configuration.nix', 'nixpkgs', 'toplevel', 'bin/activate', 'manifest.json']) {
      expect(existsSync(path.join(bundle, part))).toBe(true);
    }
    expect(readFileSync(path.join(bundle, 'toplevel', 'build-machine'), 'utf8').trim()).toBe('aarch64');
    // bin/activate is the activation stage's script, bound to this bundle.
    const activate = readFileSync(path.join(bundle, 'bin', 'activate'), 'utf8');
    expect(activate).toContain('# pideploy-activate-protocol: 4');
    expect(activate).toContain(`bundle=${bundle}`);
    // What --print-expr prints builds the same bundle with plain nix-build (its builder runs here, not under qemu).
    const printed = await pideploy(['build', 'pi1', '--print-expr'], project, env);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toContain('buildPkgs.runCommand');
    const expressionFile = path.join(workDir, 'bundle-pi1.nix');
    await writeFile(expressionFile, printed.stdout);
    expect(spawnSync('nix-build', ['--no-out-link', expressionFile], { env: { ...env, NIX_PATH: '' }, encoding: 'utf8' }).stdout.trim()).toBe(bundle);

    // Copy the built bundle with the transport stage: `pideploy copy pi1` takes it from `pideploy build`.
    const passwordFile = path.join(workDir, 'sudo-password');
    await writeFile(passwordFile, `${LAB_SUDO_PASSWORD}\n`, { mode: 0o600 });
    // A host of pideploy.json imports as root, as deploy does: with no terminal to ask on and no
    // password given, that is said before anything is sent.
    const noPassword = await pideploy(['copy', 'pi1'], project, env);
    expect(noPassword.code).toBe(1);
    expect(noPassword.stderr).toMatch(/^pideploy: sudo on deploy@\S+ needs deploy's password, and none was given\nhint: run interactively, or pass --sudo-password-file FILE \/ --sudo-password-stdin\n$/u);
    const loginsBefore = sshLoginCount(status.hosts[0]!);
    const sudoRan = sudoLogFrom(status.hosts[0]!);
    const passwordChecks = sudoPasswordChecksFrom(status.hosts[0]!);
    const copy = await pideploy(['copy', 'pi1', '--sudo-password-file', passwordFile], project, env);
    expect(copy.stderr).not.toContain('pideploy:');
    expect(copy.code).toBe(0);
    expect(copy.stdout).toMatch(/^pi1: \d+ path/u);
    expect(sshLoginCount(status.hosts[0]!) - loginsBefore).toBe(1);
    // One root command, which proved the password too: one password check, no separate sudo -v.
    expect(sudoCommandsOf(sudoRan())).toEqual(['/usr/bin/nix-store --serve --write']);
    expect(passwordChecks()).toEqual(['deploy sudo -k -S -p  -- nix-store --serve --write']);
    const toplevel = (await labExec('pi1', ['readlink', '-f', `${bundle}/toplevel`])).stdout.trim();
    // `pideploy diff pi1` and `pideploy activate pi1` take the built bundle too: build, copy,
    // activate is the whole deployment by hand.
    const diff = await pideploy(['diff', 'pi1'], project, env);
    expect([diff.code, diff.stderr]).toEqual([0, '']);
    const diffOfToplevel = await pideploy(['diff', 'pi1', '--toplevel', toplevel], project, env);
    expect(diff.stdout).toBe(diffOfToplevel.stdout);
    expect(diff.stdout).toMatch(/\S/u);
    const activation = await pideploy(['activate', 'pi1', '--sudo-password-file', passwordFile, '--confirm-timeout', '20'], project, env);
    expect(activation.stderr).not.toContain('pideploy:');
    expect(activation.code).toBe(0);
    expect(activation.stdout).toMatch(new RegExp(`^pi1: switch of ${toplevel} confirmed \\(deployment [^)]+\\)\n$`, 'u'));
    expect((await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim()).toBe(toplevel);
    expect((await labExec('pi1', ['readlink', '-f', '/etc/nixos/current-configuration'])).stdout.trim()).toBe(bundle);
    const systemStatus = await pideploy(['status', 'pi1', '--json'], project, env);
    const [reported] = (JSON.parse(systemStatus.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { runningSystem?: string; currentSystem?: string; bootedSystem?: string }[] }).result;
    expect(systemStatus.stdout).toContain(toplevel);
    // The lab host has not rebooted since: there is no booted system to report (not a dangling path).
    expect(reported?.bootedSystem).toBeUndefined();

    // A person can run the bundle's script by hand: `sudo $bundle/bin/activate test`.
    const byHand = spawnSync('ssh', ['-F', status.sshConfig, 'deploy@pi1', `sudo -S -p '' ${bundle}/bin/activate test`], {
      env,
      input: `${LAB_SUDO_PASSWORD}\n`,
      encoding: 'utf8',
    });
    expect(byHand.stderr).toContain('succeeded (activated)');
    expect(byHand.status).toBe(0);
    const log = await labExec('pi1', ['tail', '-n', '1', '/etc/lab-activations.log']);
    expect(log.stdout).toContain(`test ${toplevel}`);
  });

  it('passes the Nix settings of build and deploy through: -L, --option, --cores, --show-trace', async () => {
    const project = path.join(workDir, 'nix-settings');
    expect((await pideploy(['init', project, '--lab'], workDir, process.env)).code).toBe(0);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'base.nix'));
    await writeFile(path.join(project, 'configuration.nix'), '{ ... }: { imports = [ ./base.nix ./probe.nix ]; }\n');
    // A new nonce each time, so the probe really builds.
    const probe = (nonce: string) =>
      writeFile(path.join(project, 'probe.nix'), `{ pkgs, ... }: { environment.etc."cores".source = pkgs.runCommand "cores-probe" { nonce = "${nonce}"; } "echo probe-line cores=$NIX_BUILD_CORES; echo $NIX_BUILD_CORES > $out"; }\n`);

    await probe(`build-${Date.now()}`);
    const build = await pideploy(['build', 'pi1', '-L', '--option', 'cores=2'], project, env);
    expect(build.stderr).not.toContain('pideploy:');
    expect(build.code).toBe(0);
    expect(build.stderr).toContain('[pi1] cores-probe> probe-line cores=2\n');
    expect(readFileSync(path.join(build.stdout.trim(), 'toplevel', 'etc', 'cores'), 'utf8')).toBe('2\n');

    await probe(`deploy-${Date.now()}`);
    const deploy = await runBuiltPideployWithLabSudo(['deploy', 'pi1', '--dry-run', '--print-build-logs', '--cores', '1'], { cwd: project, env });
    expect(deploy.stderr).not.toContain('pideploy:');
    expect(deploy.code).toBe(0);
    expect(deploy.stderr).toContain('[pi1] cores-probe> probe-line cores=1\n');

    await writeFile(path.join(project, 'probe.nix'), '{ ... }: let pick = name: throw "no wifi for ${name}"; in { environment.etc."wifi".text = pick "pi1"; }\n');
    const untraced = await pideploy(['build', 'pi1'], project, env);
    expect(untraced.code).toBe(1);
    expect(untraced.stderr).toContain("hint: Nix's message is above; rerun with --show-trace to see where the error comes from\n");
    expect(untraced.stderr).not.toContain("while evaluating 'pick'");
    const traced = await runBuiltPideployWithLabSudo(['deploy', 'pi1', '--show-trace'], { cwd: project, env });
    expect(traced.code).toBe(1);
    expect(traced.stderr).toContain("while evaluating 'pick'");
    expect(traced.stderr).toMatch(/probe\.nix:1:\d+/u);
  });

  it('build --dry-run evaluates every host, says what a build would do, builds nothing, and fails for a broken one (exit 1)', async () => {
    const project = path.join(workDir, 'dry-run');
    expect((await pideploy(['init', project, '--lab'], workDir, process.env)).code).toBe(0);
    await writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./hardware-configuration.nix ]; environment.etc."dry".text = "${Date.now()}"; }\n`);
    await writeFile(path.join(project, 'broken.nix'), '{ ... }: { environment.etc."dry".text = 1 + "one"; }\n');
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, { target: string; configuration: string }> };
    config.hosts['pi2'] = { ...config.hosts['pi1']!, target: 'deploy@pi2' };
    config.hosts['pi3'] = { ...config.hosts['pi1']!, target: 'deploy@pi3', configuration: './broken.nix' };
    await writeFile(configFile, JSON.stringify(config));

    const dry = await pideploy(['build', '--dry-run', '--json'], project, env);
    expect(dry.code).toBe(1);
    type Outcome = { host: string; ok: boolean; built?: boolean; outPath?: string; derivationsToBuild?: string[]; error?: { code: string; message: string } };
    const outcomes = (JSON.parse(dry.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { dryRun: Outcome[] } }).result.dryRun;
    expect(outcomes.map((outcome) => [outcome.host, outcome.ok])).toEqual([['pi1', true], ['pi2', true], ['pi3', false]]);
    expect(outcomes[0]).toMatchObject({ built: false, derivationsToBuild: expect.arrayContaining([expect.stringMatching(/-etc-dry\.drv$/u)]) });
    expect(outcomes[1]?.outPath).toBe(outcomes[0]?.outPath);
    expect(outcomes[2]?.error).toMatchObject({ code: 'PIDEPLOY_BUILD_EVAL_FAILED', message: expect.stringContaining('broken.nix') });
    expect(spawnSync('nix-store', ['--check-validity', outcomes[0]!.outPath!], { env }).status).not.toBe(0);
    expect(existsSync(path.join(project, '.pideploy', 'gcroots', 'pi1-toplevel'))).toBe(false);

    const build = await pideploy(['build', 'pi1'], project, env);
    expect(build.code).toBe(0);
    // pi2 has pi1's configuration: built with it.
    const again = await pideploy(['build', '--dry-run', 'pi2'], project, env);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`pi2: built already: ${outcomes[0]!.outPath!}\n`);
  });

  it('add-host logs in once to learn the system and how to get root, then adds the host; a host it cannot reach changes nothing', async () => {
    const project = path.join(workDir, 'add-host');
    expect((await pideploy(['init', project, '--lab'], workDir, process.env)).code).toBe(0);
    const configFile = path.join(project, 'pideploy.json');
    // Laid out by hand (tabs, a line per host): add-host keeps that layout.
    const handWritten = `${JSON.stringify(JSON.parse(readFileSync(configFile, 'utf8')), null, '\t').replace(/^\t\t"[^"]+": \{[^}]*\}/gmu, (host) => host.replace(/\s*\n\s*/gu, ' '))}\n`;
    const lastHostEnd = [...handWritten.matchAll(/^\t\t"[^"]+": \{[^\n]*\}/gmu)].map((match) => match.index + match[0].length).at(-1) ?? 0;
    expect(lastHostEnd).toBeGreaterThan(0);
    writeFileSync(configFile, handWritten);
    const loginsBefore = sshLoginCount(status.hosts[0]!);
    const added = await pideploy(['add-host', 'kitchen', '--target', 'deploy@pi1', '--tag', 'fleet', '--ssh-config', status.sshConfig], project, env);
    expect(added.stderr).toBe('');
    expect(added.code).toBe(0);
    expect(sshLoginCount(status.hosts[0]!) - loginsBefore).toBe(1);
    // The lab host is this machine's kind (an x86_64 stand-in), and its deploy login needs sudo's password.
    const machine = spawnSync('uname', ['-m'], { encoding: 'utf8' }).stdout.trim();
    expect(added.stdout.startsWith(`added kitchen to ${configFile}: deploy@pi1, ${machine}-linux, sudo with a password, tags @fleet (probed deploy@${status.hosts[0]!.address}: ${machine}`)).toBe(true);
    expect(added.stdout.endsWith(')\nnext: pideploy deploy kitchen\n')).toBe(true);
    const written = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, unknown> };
    expect(written.hosts['kitchen']).toEqual({ target: 'deploy@pi1', configuration: './configuration.nix', system: `${machine}-linux`, tags: ['fleet'], sshConfig: status.sshConfig });
    const edited = readFileSync(configFile, 'utf8');
    expect(edited.startsWith(`${handWritten.slice(0, lastHostEnd)},\n\t\t"kitchen": {\n\t\t\t"target": "deploy@pi1",\n`)).toBe(true);
    expect(edited.endsWith(`\n\t\t}${handWritten.slice(lastHostEnd)}`)).toBe(true);
    const listed = await pideploy(['hosts', '@fleet'], project, env);
    expect(listed.stdout).toMatch(/^kitchen +deploy@pi1 /mu);

    // Root's login: no sudo at all.
    const root = await pideploy(['add-host', 'pi1-root', '--target', 'root@pi1', '--ssh-config', status.sshConfig], project, env);
    expect(root.code, root.stderr).toBe(0);
    expect((JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, { sudo?: string }> }).hosts['pi1-root']?.sudo).toBe('root');

    const before = readFileSync(configFile, 'utf8');
    const off = await pideploy(['add-host', 'off', '--target', 'deploy@pi1:2', '--ssh-config', status.sshConfig], project, env);
    expect(off.code).toBe(1);
    expect(off.stderr).toMatch(/^pideploy: cannot reach .+:2: /u);
    const taken = await pideploy(['add-host', 'kitchen', '--target', 'deploy@pi1'], project, env);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/already has a host named kitchen\n/u);
    expect(readFileSync(configFile, 'utf8')).toBe(before);
  });

  it('refuses to overwrite an existing project and writes nothing', async () => {
    const project = path.join(workDir, 'existing');
    await pideploy(['init', project, '--lab'], workDir, process.env);
    await writeFile(path.join(project, 'configuration.nix'), '# mine\n');
    const again = await pideploy(['init', project, '--lab'], workDir, process.env);
    expect(again.code).toBe(2);
    expect(again.stderr).toBe(`pideploy: ${path.join(project, 'pideploy.json')} already exists\nhint: pick an empty directory, or pass --force to overwrite the scaffold\n`);
    expect(readFileSync(path.join(project, 'configuration.nix'), 'utf8')).toBe('# mine\n');
  });
});
