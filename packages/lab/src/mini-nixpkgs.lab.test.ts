import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { shellQuote } from '@pideploy/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureAarch64Busybox, ensureQemuAarch64Binfmt, removeQemuAarch64Binfmt, type QemuAarch64BinfmtRecord } from './aarch64.js';
import { labLayout, type LabLayout } from './layout.js';
import { assembleMiniNixpkgs } from './mini-nixpkgs.js';
import { labLocalNixEnv } from './nix-env.js';
import { runCommand, runCommandAllowingFailure, type CommandOutput } from './run.js';
import { describeLab } from './testing/index.js';

const CONFIGURATION = `{ config, pkgs, lib, ... }: {
  imports = [ ./hardware.nix ];
  networking.hostName = "pi";
  environment.systemPackages = [ pkgs.hello ];
  environment.etc."motd".text = "deployed by the mini-nixpkgs lab test\\n";
  environment.etc."lab/copied.conf" = { text = "copied\\n"; mode = "0640"; };
  services.openssh.enable = true;
  users.users.deploy = { isNormalUser = true; openssh.authorizedKeys.keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMiniNixpkgsLabTestKey deploy@lab" ]; };
  system.stateVersion = "24.05";
}
`;

const HARDWARE = `{ pkgs, lib, ... }: {
  boot.loader.grub.enable = false;
  boot.loader.generic-extlinux-compatible.enable = true;
  environment.systemPackages = [ pkgs.cowsay ];
}
`;

describeLab('mini-nixpkgs: NixOS interface, module system and builds with real nix (x86_64, aarch64 under qemu, cross)', () => {
  let workDir: string;
  let layout: LabLayout;
  let binfmt: QemuAarch64BinfmtRecord | undefined;
  let tree: string;
  let laterTree: string;
  let nixEnv: Record<string, string>;
  const builds = new Map<string, Promise<string>>();

  const nix = (argv: readonly string[]): Promise<CommandOutput> => runCommandAllowingFailure(argv, { env: nixEnv, cwd: workDir });

  /** nix-build of an expression, memoised so tests share builds. */
  function build(expression: string): Promise<string> {
    let result = builds.get(expression);
    if (result === undefined) {
      result = nix(['nix-build', '--no-out-link', '-E', expression]).then((output) => {
        if (output.exitCode !== 0) throw new Error(`nix-build failed (exit ${output.exitCode}):\n${output.stderr}`);
        return output.stdout.trim();
      });
      builds.set(expression, result);
    }
    return result;
  }

  const toplevelExpression = (configuration: string, system: string, nixpkgs = tree) =>
    `(import ${nixpkgs}/nixos { configuration = ${configuration}; system = "${system}"; }).config.system.build.toplevel`;
  const toplevel = (system: string, configuration = `${workDir}/configuration.nix`) => build(toplevelExpression(configuration, system));

  async function evaluate(expression: string): Promise<unknown> {
    const output = await nix(['nix-instantiate', '--eval', '--strict', '--json', '-E', expression]);
    if (output.exitCode !== 0) throw new Error(`nix-instantiate failed (exit ${output.exitCode}):\n${output.stderr}`);
    return JSON.parse(output.stdout) as unknown;
  }

  /** Runs `script` as root in a private mount namespace whose /etc, /run, /root, /home and /nix/var/nix are scratch copies. */
  async function inScratchHost(scratch: string, script: string): Promise<CommandOutput> {
    if (!existsSync(path.join(scratch, 'etc'))) {
      for (const directory of ['run', 'root/.ssh', 'home/deploy/.ssh', 'nix-var']) await mkdir(path.join(scratch, directory), { recursive: true });
      await runCommand(['cp', '-a', '/etc', path.join(scratch, 'etc')]);
      await writeFile(path.join(scratch, 'etc', 'NIXOS'), '');
      await writeFile(path.join(scratch, 'etc', 'motd'), 'the host motd\n');
      await writeFile(path.join(scratch, 'root', '.ssh', 'authorized_keys'), 'root-key\n');
      await writeFile(path.join(scratch, 'home', 'deploy', '.ssh', 'authorized_keys'), 'deploy-key\n');
    }
    const scratchMounts: readonly (readonly [string, string])[] = [
      ['etc', '/etc'],
      ['run', '/run'],
      ['root', '/root'],
      ['home', '/home'],
      ['nix-var', '/nix/var/nix'],
    ];
    // The store read-only, as on NixOS: a script that writes into a store path fails instead of changing this machine's store.
    const mounts = [...scratchMounts.map(([from, to]) => `mount --bind ${shellQuote(path.join(scratch, from))} ${to}`), 'mount --bind /nix/store /nix/store', 'mount -o remount,bind,ro /nix/store'].join(' && ');
    // The scratch /etc has /etc/NIXOS, this machine's has not: never run the script unless the mounts took.
    return runCommandAllowingFailure(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `set -e; ${mounts}; test -f /etc/NIXOS; set +e; ${script}`]);
  }

  beforeAll(async () => {
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-mini-nixpkgs-lab-'));
    layout = labLayout(path.join(workDir, 'lab'));
    binfmt = await ensureQemuAarch64Binfmt();
    await ensureAarch64Busybox(layout);
    tree = await assembleMiniNixpkgs({ destination: path.join(workDir, 'nixpkgs-24.05'), aarch64BusyboxDir: layout.aarch64BusyboxDir });
    laterTree = await assembleMiniNixpkgs({
      destination: path.join(workDir, 'nixpkgs-24.11'),
      aarch64BusyboxDir: layout.aarch64BusyboxDir,
      version: '24.11-lab',
    });
    nixEnv = { ...labLocalNixEnv(layout.xdgCacheDir) };
    await writeFile(path.join(workDir, 'configuration.nix'), CONFIGURATION);
    await writeFile(path.join(workDir, 'hardware.nix'), HARDWARE);
    await writeFile(
      path.join(workDir, 'cross.nix'),
      '{ ... }: { imports = [ ./configuration.nix ]; nixpkgs.buildPlatform = "x86_64-linux"; nixpkgs.hostPlatform = "aarch64-linux"; }\n',
    );
    await writeFile(path.join(workDir, 'unknown-option.nix'), '{ ... }: { imports = [ ./configuration.nix ]; services.nonexistent.enable = true; }\n');
    await writeFile(path.join(workDir, 'type-error.nix'), '{ ... }: { imports = [ ./configuration.nix ]; networking.hostName = 42; }\n');
    await writeFile(path.join(workDir, 'broken-ssh.nix'), '{ ... }: { imports = [ ./configuration.nix ]; lab.breakSsh = true; }\n');
    await writeFile(path.join(workDir, 'failing.nix'), '{ ... }: { imports = [ ./configuration.nix ]; lab.failActivation = true; }\n');
    await writeFile(path.join(workDir, 'minimal.nix'), '{ ... }: { networking.hostName = "pi"; }\n');
    await writeFile(path.join(workDir, 'shape-file.nix'), '{ ... }: { networking.hostName = "pi"; environment.etc."lab-shape".text = "a file\\n"; }\n');
    await writeFile(
      path.join(workDir, 'shape-directory.nix'),
      '{ ... }: { networking.hostName = "pi"; environment.etc."lab-shape/inner".text = "inside\\n"; environment.etc."lab-shape/copied" = { text = "copied\\n"; mode = "0600"; }; }\n',
    );
  });

  afterAll(async () => {
    if (binfmt !== undefined) await removeQemuAarch64Binfmt(binfmt);
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it('builds an x86_64-linux toplevel laid out as NixOS names it', async () => {
    const system = await toplevel('x86_64-linux');
    expect(path.basename(system)).toMatch(/^[0-9a-z]{32}-nixos-system-pi-24\.05-lab$/u);
    expect(await readFile(path.join(system, 'nixos-version'), 'utf8')).toBe('24.05-lab');
    expect(await readFile(path.join(system, 'system'), 'utf8')).toBe('x86_64-linux');
    expect((await readFile(path.join(system, 'build-machine'), 'utf8')).trim()).toBe('x86_64');
    expect((await readFile(path.join(system, 'bin', 'switch-to-configuration'), 'utf8')).split('\n')[0]).toBe('#!/bin/sh');
    expect(await readFile(path.join(system, 'etc', 'motd'), 'utf8')).toBe('deployed by the mini-nixpkgs lab test\n');
    expect(await readFile(path.join(system, 'etc', 'lab', 'copied.conf.mode'), 'utf8')).toBe('0640\n');
    expect(await readFile(path.join(system, 'etc', 'ssh', 'authorized_keys.d', 'deploy'), 'utf8')).toContain('deploy@lab');
    const hello = await runCommandAllowingFailure([path.join(system, 'sw', 'bin', 'hello')]);
    expect(hello.stdout).toBe('Hello, world!\n');
  });

  it('builds aarch64-linux under qemu: the build ran as aarch64, the scripts run the aarch64 busybox', async () => {
    const system = await toplevel('aarch64-linux');
    expect(await readFile(path.join(system, 'system'), 'utf8')).toBe('aarch64-linux');
    expect((await readFile(path.join(system, 'build-machine'), 'utf8')).trim()).toBe('aarch64');
    const shebang = (await readFile(path.join(system, 'bin', 'switch-to-configuration'), 'utf8')).split('\n')[0] ?? '';
    expect(shebang).toMatch(/^#!\/nix\/store\/[0-9a-z]{32}-bootstrap-tools-aarch64\/sh$/u);
    const shell = shebang.slice(2);
    expect((await runCommandAllowingFailure(['file', '-bL', shell])).stdout).toMatch(/ELF 64-bit LSB .*ARM aarch64/u);
    const header = (await readFile(path.join(path.dirname(shell), 'busybox'))).subarray(0, 20);
    expect([...header.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
    expect(header.readUInt16LE(18)).toBe(0xb7);
    const cowsay = await runCommandAllowingFailure([path.join(system, 'sw', 'bin', 'cowsay'), 'moo']);
    expect(cowsay.stdout).toContain('< moo >');
    expect(await toplevel('x86_64-linux')).not.toBe(system);
  });

  it('cross-builds (buildPlatform x86_64 → hostPlatform aarch64): aarch64 outputs built on x86_64, a different path than emulated', async () => {
    const cross = await toplevel('x86_64-linux', `${workDir}/cross.nix`);
    const emulated = await toplevel('aarch64-linux');
    expect(cross).not.toBe(emulated);
    expect(path.basename(cross)).toMatch(/-nixos-system-pi-24\.05-lab$/u);
    expect(await readFile(path.join(cross, 'system'), 'utf8')).toBe('aarch64-linux');
    expect((await readFile(path.join(cross, 'build-machine'), 'utf8')).trim()).toBe('x86_64');
    const firstLine = async (system: string) => (await readFile(path.join(system, 'bin', 'switch-to-configuration'), 'utf8')).split('\n')[0];
    expect(await firstLine(cross)).toBe(await firstLine(emulated));
    const platforms = await evaluate(`let n = import ${tree}/nixos { configuration = ${workDir}/cross.nix; }; in
      [ n.pkgs.stdenv.buildPlatform.system n.pkgs.stdenv.hostPlatform.system n.config.system.build.toplevel.system ]`);
    // The toplevel derivation itself is built by (and for the builder of) x86_64-linux.
    expect(platforms).toEqual(['x86_64-linux', 'aarch64-linux', 'x86_64-linux']);
  });

  it('follows imports and merges definitions by type: lists concatenated, each module sets its own options', async () => {
    const merged = await evaluate(`let n = import ${tree}/nixos { configuration = ${workDir}/configuration.nix; system = "x86_64-linux"; }; in {
      packages = map (p: p.name) n.config.environment.systemPackages;
      grub = n.config.boot.loader.grub.enable;
      extlinux = n.config.boot.loader.generic-extlinux-compatible.enable;
      hostName = n.config.networking.hostName;
      home = n.config.users.users.deploy.home;
      files = n.options.environment.systemPackages.files;
    }`);
    expect(merged).toEqual({
      packages: ['hello-2.12.1', 'cowsay-3.7.0'],
      grub: false,
      extlinux: true,
      hostName: 'pi',
      home: '/home/deploy',
      files: [path.join(workDir, 'configuration.nix'), path.join(workDir, 'hardware.nix')],
    });
    const system = await toplevel('x86_64-linux');
    expect(existsSync(path.join(system, 'sw', 'bin', 'hello'))).toBe(true);
    expect(existsSync(path.join(system, 'sw', 'bin', 'cowsay'))).toBe(true);
    const priorities = await evaluate(`(import ${tree}/nixos { system = "x86_64-linux"; configuration = { lib, ... }: {
      imports = [ { networking.hostName = lib.mkDefault "from-default"; time.timeZone = "UTC"; } ];
      networking.hostName = "explicit";
      time.timeZone = lib.mkForce "Europe/Berlin";
    }; }).config.networking.hostName + " " + (import ${tree}/nixos { system = "x86_64-linux"; configuration = { lib, ... }: {
      time.timeZone = lib.mkForce "Europe/Berlin"; imports = [ { time.timeZone = "UTC"; } ];
    }; }).config.time.timeZone`);
    expect(priorities).toBe('explicit Europe/Berlin');
  });

  it("rejects an undeclared option with NixOS's wording, naming the file", async () => {
    const result = await nix(['nix-instantiate', '-E', toplevelExpression(`${workDir}/unknown-option.nix`, 'x86_64-linux')]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain("error: The option `services.nonexistent' does not exist. Definition values:");
    expect(result.stderr).toContain(`- In \`${workDir}/unknown-option.nix'`);
    expect(result.stderr).toContain('enable = true;');
  });

  it('rejects a value of the wrong type, naming the option, the type and the file', async () => {
    const result = await nix(['nix-instantiate', '-E', toplevelExpression(`${workDir}/type-error.nix`, 'x86_64-linux')]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain("A definition for option `networking.hostName' is not of type `string matching the pattern");
    expect(result.stderr).toContain(`- In \`${workDir}/type-error.nix': 42`);
  });

  it('never reads <nixos-config>: nixos/default.nix without configuration says so', async () => {
    const result = await nix(['nix-instantiate', '--eval', '-E', `(import ${tree}/nixos { }).config.networking.hostName`]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('never reads NIX_PATH or <nixos-config>');
  });

  it('switch-to-configuration refuses non-root users and unknown actions', async () => {
    for (const system of [await toplevel('x86_64-linux'), await toplevel('aarch64-linux')]) {
      const script = path.join(system, 'bin', 'switch-to-configuration');
      const asNobody = await runCommandAllowingFailure(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', script, 'switch']);
      expect(asNobody.exitCode).toBe(1);
      expect(asNobody.stderr).toContain('must be run as root');
      const unknown = await runCommandAllowingFailure([script, 'reboot-into-the-void']);
      expect(unknown.exitCode).toBe(1);
      expect(unknown.stderr).toContain('Usage: ');
      expect(unknown.stderr).toContain('[switch|boot|test|dry-activate]');
      const noAction = await runCommandAllowingFailure([script]);
      expect(noAction.exitCode).toBe(1);
    }
  });

  it('activates on a scratch host (private mount namespace): /run/current-system, /etc the NixOS way, boot default, log, SSH break and restore', async () => {
    const scratch = path.join(workDir, 'scratch-host');
    const system = await toplevel('aarch64-linux');
    const broken = await toplevel('aarch64-linux', `${workDir}/broken-ssh.nix`);
    const failing = await toplevel('aarch64-linux', `${workDir}/failing.nix`);
    const minimal = await toplevel('aarch64-linux', `${workDir}/minimal.nix`);
    const switchCommand = (generation: string, action: string) => `${generation}/bin/switch-to-configuration ${action}`;

    const first = await inScratchHost(scratch, `${switchCommand(system, 'switch')}; echo "exit=$?"; readlink /run/current-system /etc/static /etc/motd /nix/var/nix/lab-boot/default; cat /etc/motd; stat -c %a /etc/lab/copied.conf`);
    expect(first.stdout.split('\n')).toEqual([
      'exit=0',
      system,
      `${system}/etc`,
      '/etc/static/motd',
      system,
      'deployed by the mini-nixpkgs lab test',
      '640',
      '',
    ]);
    expect(first.stderr).toContain('moved /etc/motd aside to /etc/motd.lab-orig');
    expect(await readFile(path.join(scratch, 'etc', 'motd.lab-orig'), 'utf8')).toBe('the host motd\n');

    const dry = await inScratchHost(scratch, `${switchCommand(broken, 'dry-activate')}; echo "exit=$?"; readlink /run/current-system`);
    expect(dry.stdout).toBe(`exit=0\n${system}\n`);
    expect(dry.stderr).toContain('would move /root/.ssh/authorized_keys aside (lab.breakSsh)');

    const breaking = await inScratchHost(scratch, `${switchCommand(broken, 'test')}; echo "exit=$?"; readlink /run/current-system /nix/var/nix/lab-boot/default`);
    expect(breaking.stdout).toBe(`exit=0\n${broken}\n${system}\n`);
    expect(existsSync(path.join(scratch, 'root', '.ssh', 'authorized_keys'))).toBe(false);
    expect(await readFile(path.join(scratch, 'home', 'deploy', '.ssh', 'authorized_keys.lab-broken'), 'utf8')).toBe('deploy-key\n');

    const failed = await inScratchHost(scratch, `${switchCommand(failing, 'switch')}; echo "exit=$?"; readlink /run/current-system /nix/var/nix/lab-boot/default`);
    expect(failed.stdout).toBe(`exit=2\n${broken}\n${system}\n`);
    expect(failed.stderr).toContain('lab.failActivation');

    const restoring = await inScratchHost(
      scratch,
      `NIXOS_INSTALL_BOOTLOADER=1 ${switchCommand(minimal, 'switch')}; echo "exit=$?"; readlink /run/current-system /nix/var/nix/lab-boot/default; cat /etc/motd; test -e /etc/lab/copied.conf || echo copied-file-removed`,
    );
    expect(restoring.stdout).toBe(`exit=0\n${minimal}\n${minimal}\nthe host motd\ncopied-file-removed\n`);
    expect(restoring.stderr).toContain('installing the boot loader...');
    expect(await readFile(path.join(scratch, 'root', '.ssh', 'authorized_keys'), 'utf8')).toBe('root-key\n');
    expect(await readFile(path.join(scratch, 'home', 'deploy', '.ssh', 'authorized_keys'), 'utf8')).toBe('deploy-key\n');

    const boot = await inScratchHost(scratch, `NIXOS_INSTALL_BOOTLOADER= ${switchCommand(system, 'boot')}; echo "exit=$?"; readlink /run/current-system /nix/var/nix/lab-boot/default`);
    expect(boot.stdout).toBe(`exit=0\n${minimal}\n${system}\n`);

    const log = (await readFile(path.join(scratch, 'etc', 'lab-activations.log'), 'utf8')).trim().split('\n');
    const stamp = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ';
    expect(log).toHaveLength(6);
    expect(log[0]).toMatch(new RegExp(`^${stamp} switch ${system} uid=0 arch=aarch64$`, 'u'));
    expect(log[1]).toMatch(new RegExp(`^${stamp} dry-activate ${broken} uid=0 arch=aarch64$`, 'u'));
    expect(log[3]).toMatch(new RegExp(`^${stamp} switch ${failing} uid=0 arch=aarch64 result=failed$`, 'u'));
    expect(log[4]).toMatch(new RegExp(`^${stamp} switch ${minimal} uid=0 arch=aarch64 install-bootloader=1$`, 'u'));
    expect(log[5]).toMatch(new RegExp(`^${stamp} boot ${system} uid=0 arch=aarch64 install-bootloader=$`, 'u'));
    // This machine's own /etc and /run were not touched.
    expect(existsSync('/etc/lab-activations.log')).toBe(false);
    expect(existsSync('/etc/static')).toBe(false);
  });

  it('turns an /etc entry that was a file into a directory as NixOS does: the old link goes, the store is never written', async () => {
    const scratch = path.join(workDir, 'scratch-shape');
    const asFile = await toplevel('x86_64-linux', `${workDir}/shape-file.nix`);
    const asDirectory = await toplevel('x86_64-linux', `${workDir}/shape-directory.nix`);
    const first = await inScratchHost(scratch, `${asFile}/bin/switch-to-configuration switch; echo "exit=$?"; readlink /etc/lab-shape; cat /etc/lab-shape`);
    expect(first.stdout).toBe('exit=0\n/etc/static/lab-shape\na file\n');
    const second = await inScratchHost(
      scratch,
      `touch ${asDirectory}/written 2>/dev/null || echo store-read-only; ${asDirectory}/bin/switch-to-configuration switch; echo "exit=$?"; test -d /etc/lab-shape && ! test -L /etc/lab-shape && echo real-directory; readlink /etc/lab-shape/inner; cat /etc/lab-shape/inner /etc/lab-shape/copied; stat -c %a /etc/lab-shape/copied; test -L /etc/lab-shape/copied || echo copied-file`,
    );
    expect(second.stdout).toBe('store-read-only\nexit=0\nreal-directory\n/etc/static/lab-shape/inner\ninside\ncopied\n600\ncopied-file\n');
    expect(second.stderr).toContain('removing obsolete symlink /etc/lab-shape...');
    // The earlier generation's etc tree in the store is as it was built.
    expect(await readlink(path.join(asFile, 'etc', 'lab-shape'))).toMatch(/^\/nix\/store\//u);
    expect(await readlink(path.join(asDirectory, 'etc', 'lab-shape', 'inner'))).toMatch(/^\/nix\/store\//u);
  });

  it('provides the trivial builders with nixpkgs signatures, for x86_64-linux and (under qemu) aarch64-linux', async () => {
    for (const [system, machine] of [
      ['x86_64-linux', 'x86_64'],
      ['aarch64-linux', 'aarch64'],
    ] as const) {
      const pkgs = `(import ${tree} { system = "${system}"; })`;
      const text = await build(`${pkgs}.writeText "lab-note" "written by writeText\\n"`);
      expect(await readFile(text, 'utf8')).toBe('written by writeText\n');
      const ran = await build(`with ${pkgs}; runCommand "lab-run" { greeting = "hi"; nativeBuildInputs = [ hello ]; } ''
        mkdir -p $out
        printf '%s\\n' "$greeting" > $out/greeting
        hello > $out/hello
        uname -m > $out/machine
        cat \${writeText "lab-note" "written by writeText\\n"} > $out/note
      ''`);
      expect(await readFile(path.join(ran, 'greeting'), 'utf8')).toBe('hi\n');
      expect(await readFile(path.join(ran, 'hello'), 'utf8')).toBe('Hello, world!\n');
      expect((await readFile(path.join(ran, 'machine'), 'utf8')).trim()).toBe(machine);
      expect(await readFile(path.join(ran, 'note'), 'utf8')).toBe('written by writeText\n');
      const farm = await build(`with ${pkgs}; linkFarm "lab-farm" [ { name = "notes/note"; path = writeText "lab-note" "written by writeText\\n"; } { name = "hello"; path = hello; } ]`);
      expect(await readlink(path.join(farm, 'notes', 'note'))).toBe(text);
      expect(await readFile(path.join(farm, 'hello', 'bin', 'hello'), 'utf8')).toContain('Hello, world!');
      const script = await build(`${pkgs}.writeShellScript "lab-script" "echo script on $(uname -m)"`);
      expect((await runCommandAllowingFailure([script])).stdout).toBe(`script on ${machine}\n`);
    }
  });

  it('reports the revision in lib.version, lib.trivial.version and the system label', async () => {
    expect(await evaluate(`let p = import ${tree} { }; in [ p.lib.version p.lib.trivial.version p.hello.version ]`)).toEqual([
      '24.05-lab',
      '24.05-lab',
      '2.12.1',
    ]);
    expect(
      await evaluate(`[ (import ${laterTree} { }).lib.version (import ${laterTree}/nixos { configuration = ${workDir}/minimal.nix; system = "x86_64-linux"; }).config.system.build.toplevel.name ]`),
    ).toEqual(['24.11-lab', 'nixos-system-pi-24.11-lab']);
  });
});
