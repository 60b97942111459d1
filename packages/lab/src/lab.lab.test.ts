import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LAB_SUDO_PASSWORD } from './host-plan.js';
import { labCutSshSessions, labDown, labExec, labRebootHost, labShapeLink, labStatus, labUp, type LabStatus } from './lab.js';
import { describeLab, sshLoginCount } from './testing/index.js';

const execFileAsync = promisify(execFile);

/** Runs argv and returns stdout+stderr and the exit code (never throws on non-zero). */
async function run(
  argv: readonly string[],
  options: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  const [file, ...args] = argv as [string, ...string[]];
  const child = execFileAsync(file, args, { env: options.env ?? process.env, cwd: options.cwd, maxBuffer: 64 << 20 });
  if (options.input !== undefined) {
    child.child.stdin?.end(options.input);
  } else {
    child.child.stdin?.end();
  }
  try {
    const { stdout, stderr } = await child;
    return { stdout, stderr, code: 0 };
  } catch (error) {
    const failure = error as { stdout: string; stderr: string; code: number };
    return { stdout: failure.stdout, stderr: failure.stderr, code: typeof failure.code === 'number' ? failure.code : 1 };
  }
}

describeLab('the lab: real nix, sshd, sudo and a separate store per host', () => {
  let status: LabStatus;
  let firstUpSeconds = 0;
  let nixEnv: NodeJS.ProcessEnv;
  let workDir: string;
  let nixpkgsUrl = '';
  let nixpkgsSha256 = '';

  const ssh = (target: string, command: string, input?: string) =>
    run(['ssh', '-F', status.sshConfig, target, command], input === undefined ? {} : { input });

  /** Builds the mini-nixpkgs toplevel of `configuration` for `system` with real nix-build. */
  async function buildToplevel(system: string, configuration: string): Promise<string> {
    const expression = `let nixpkgs = builtins.fetchTarball { url = "${nixpkgsUrl}"; sha256 = "${nixpkgsSha256}"; };
      in (import "\${nixpkgs}/nixos" { configuration = ${configuration}; system = "${system}"; }).config.system.build.toplevel`;
    const result = await run(['nix-build', '--no-out-link', '-E', expression], { env: nixEnv, cwd: workDir });
    expect(result.stderr + result.stdout).not.toContain('error:');
    expect(result.code).toBe(0);
    return result.stdout.trim();
  }

  beforeAll(async () => {
    await labDown();
    const started = performance.now();
    await labUp({ hosts: 1 });
    firstUpSeconds = (performance.now() - started) / 1000;
    status = await labUp({ hosts: 2, hostSettings: { pi2: { trusted: false } } });
    nixEnv = { ...process.env, ...status.env };
    workDir = await mkdtemp(path.join(os.tmpdir(), 'pideploy-lab-test-'));
    await writeFile(
      path.join(workDir, 'configuration.nix'),
      `{ config, pkgs, lib, ... }: {
  imports = [ ./hardware.nix ];
  networking.hostName = "pi";
  environment.systemPackages = [ pkgs.hello ];
  environment.etc."motd".text = "deployed by the pideploy lab test\\n";
  system.stateVersion = "24.05";
}
`,
    );
    await writeFile(
      path.join(workDir, 'hardware.nix'),
      `{ ... }: { boot.loader.grub.enable = false; boot.loader.generic-extlinux-compatible.enable = true; }\n`,
    );
    const revision = status.nixpkgs?.revisions[0];
    if (revision === undefined) throw new Error('the lab published no mini-nixpkgs revision');
    nixpkgsUrl = revision.url;
    const prefetch = await run(['nix-prefetch-url', '--unpack', '--name', 'source', nixpkgsUrl], { env: nixEnv });
    expect(prefetch.code).toBe(0);
    nixpkgsSha256 = prefetch.stdout.trim();
  });

  afterAll(async () => {
    await labDown();
  });

  it('brings one host up within 15 s', () => {
    expect(firstUpSeconds).toBeLessThan(15);
  });

  it('describes every host in lab status', async () => {
    const described = await labStatus();
    expect(described.up).toBe(true);
    expect(described.hosts.map((host) => [host.name, host.target, host.trusted, host.sudo, host.running])).toEqual([
      ['pi1', 'deploy@pi1', true, 'password', true],
      ['pi2', 'deploy@pi2', false, 'password', true],
    ]);
    for (const host of described.hosts) {
      expect(host.sudoPassword).toBe(LAB_SUDO_PASSWORD);
      expect(existsSync(host.sshConfig)).toBe(true);
      expect(existsSync(host.knownHosts)).toBe(true);
      expect(existsSync(host.sshdLog)).toBe(true);
    }
    expect(readFileSync(described.envFile, 'utf8')).toContain('NIX_SSHOPTS=');
  });

  it('reaches hosts as deploy and root through the lab ssh_config, each with its own hostname and users', async () => {
    const deploy = await ssh('deploy@pi1', 'id -un; hostname; nix-store --version; test -d /etc/nixos && echo has-etc-nixos; if grep -q "^session.*motd.dynamic" /etc/pam.d/sshd; then echo runs-update-motd; fi');
    // As on NixOS, a login runs no update-motd.d scripts (Debian's pam_motd line with motd=/run/motd.dynamic is gone).
    expect(deploy.stdout.split('\n')).toEqual(['deploy', 'pi1', 'nix-store (Nix) 2.8.0', 'has-etc-nixos', '']);
    const root = await ssh('root@pi2', 'id -u; hostname');
    expect(root.stdout).toBe('0\npi2\n');
    // The machine itself has no deploy user: it exists only inside the lab hosts.
    expect((await run(['id', 'deploy'])).code).not.toBe(0);
  });

  it('pins host keys: a host key not in the lab known_hosts is refused', async () => {
    const emptyKnownHosts = path.join(workDir, 'empty_known_hosts');
    await writeFile(emptyKnownHosts, '');
    const result = await run(['ssh', '-F', status.sshConfig, '-o', `UserKnownHostsFile=${emptyKnownHosts}`, 'deploy@pi1', 'true']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('Host key verification failed');
  });

  it('checks the sudo password: right one works, wrong one is refused', async () => {
    const right = await ssh('deploy@pi1', "sudo -S -p '' id -u", `${LAB_SUDO_PASSWORD}\n`);
    expect(right.stdout).toBe('0\n');
    const wrong = await ssh('deploy@pi1', "sudo -S -p '' id -u", 'not-the-password\n');
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain('incorrect password');
    const withoutPassword = await ssh('deploy@pi1', 'sudo -n true');
    expect(withoutPassword.stderr).toContain('a password is required');
  });

  it('builds a toplevel from the archive server mini-nixpkgs for x86_64 and, under qemu, for aarch64', async () => {
    const x86 = await buildToplevel('x86_64-linux', './configuration.nix');
    const aarch64 = await buildToplevel('aarch64-linux', './configuration.nix');
    expect(x86).not.toBe(aarch64);
    expect((await readFile(path.join(x86, 'build-machine'), 'utf8')).trim()).toBe('x86_64');
    expect((await readFile(path.join(aarch64, 'build-machine'), 'utf8')).trim()).toBe('aarch64');
    expect(existsSync(path.join(aarch64, 'bin', 'switch-to-configuration'))).toBe(true);
  });

  it('keeps stores apart: a locally built path is not valid on a host until copied, then it is', async () => {
    const toplevel = await buildToplevel('aarch64-linux', './configuration.nix');
    const before = await ssh('deploy@pi1', `nix-store --check-validity ${toplevel}`);
    expect(before.code).not.toBe(0);
    expect(before.stderr).toContain('is not valid');
    const copy = await run(['nix-copy-closure', '--to', 'deploy@pi1', toplevel], { env: nixEnv });
    expect(copy.stderr).not.toContain('error');
    expect(copy.code).toBe(0);
    const after = await ssh('deploy@pi1', `nix-store --check-validity ${toplevel} && echo valid`);
    expect(after.stdout).toBe('valid\n');
    expect(existsSync(path.join(status.hosts[0]?.storeDir ?? '', path.basename(toplevel)))).toBe(true);
  });

  it('refuses unsigned paths from an untrusted deploy user, as real Nix does; root can copy', async () => {
    const toplevel = await buildToplevel('x86_64-linux', './configuration.nix');
    const untrusted = await run(['nix-copy-closure', '--to', 'deploy@pi2', toplevel], { env: nixEnv });
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toContain('lacks a valid signature');
    const asRoot = await run(['nix-copy-closure', '--to', 'root@pi2', toplevel], { env: nixEnv });
    expect(asRoot.code).toBe(0);
  });

  it('activates with one SSH login and one sudo password: profile set, /run/current-system switched, /etc applied', async () => {
    const toplevel = await buildToplevel('aarch64-linux', './configuration.nix');
    await run(['nix-copy-closure', '--to', 'deploy@pi1', toplevel], { env: nixEnv });
    const sshdLog = status.hosts[0]?.sshdLog ?? '';
    const loginsBefore = sshLoginCount({ sshdLog });
    const activation = await ssh(
      'deploy@pi1',
      `sudo -S -p '' sh -c 'nix-env -p /nix/var/nix/profiles/system --set ${toplevel} && ${toplevel}/bin/switch-to-configuration switch'`,
      `${LAB_SUDO_PASSWORD}\n`,
    );
    expect(activation.stderr).not.toContain('rror');
    expect(activation.code).toBe(0);
    expect(sshLoginCount({ sshdLog })).toBe(loginsBefore + 1);
    const current = await labExec('pi1', ['readlink', '/run/current-system']);
    expect(current.stdout.trim()).toBe(toplevel);
    const profile = await labExec('pi1', ['readlink', '-f', '/nix/var/nix/profiles/system']);
    expect(profile.stdout.trim()).toBe(toplevel);
    const motd = await labExec('pi1', ['cat', '/etc/motd']);
    expect(motd.stdout).toBe('deployed by the pideploy lab test\n');
    const log = await labExec('pi1', ['tail', '-n', '1', '/etc/lab-activations.log']);
    expect(log.stdout).toContain('switch');
    expect(log.stdout).toContain('arch=aarch64');
    // This machine itself was not touched.
    expect(existsSync('/etc/lab-activations.log')).toBe(false);
  });

  it('serves fetchTarball with the pinned sha256 from the archive server', async () => {
    const result = await run(
      ['nix-instantiate', '--eval', '-E', `(import (builtins.fetchTarball { url = "${nixpkgsUrl}"; sha256 = "${nixpkgsSha256}"; }) {}).lib.version`],
      { env: nixEnv },
    );
    expect(result.stdout.trim()).toBe('"24.05-lab"');
  });

  it('runs console commands with lab exec and names unknown hosts', async () => {
    const result = await labExec('pi2', ['hostname']);
    expect(result).toMatchObject({ stdout: 'pi2\n', exitCode: 0 });
    await expect(labExec('pi9', ['true'])).rejects.toThrow('no lab host named "pi9" (the lab has pi1, pi2)');
  });

  it('reboots a host: /run is lost, the booted system comes back from the boot entry, the store stays', async () => {
    const before = (await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim();
    expect(before).toMatch(/^\/nix\/store\//u);
    await labExec('pi1', ['touch', '/run/lab-reboot-marker']);
    await labRebootHost('pi1');
    expect((await labExec('pi1', ['test', '-e', '/run/lab-reboot-marker'])).exitCode).not.toBe(0);
    expect((await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim()).toBe(before);
    expect((await labExec('pi1', ['readlink', '/run/booted-system'])).stdout.trim()).toBe(before);
    expect((await ssh('deploy@pi1', `nix-store --check-validity ${before} && echo valid`)).stdout).toBe('valid\n');
  });

  it('reboots from inside with the system\'s systemctl: a new boot id, every process gone, the boot default booted and activated', async () => {
    const bootId = async () => (await ssh('deploy@pi1', 'cat /proc/sys/kernel/random/boot_id')).stdout.trim();
    const before = await bootId();
    expect(before).toMatch(/^[0-9a-f-]{36}$/u);
    expect(before).not.toBe(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    // Boot the system built for aarch64 next (a `boot` with the lab's boot loader), without activating it.
    const next = await buildToplevel('aarch64-linux', '{ pkgs, ... }: { imports = [ ./configuration.nix ]; environment.etc."lab-next".text = "next"; }');
    await run(['nix-copy-closure', '--to', 'deploy@pi1', next], { env: nixEnv });
    expect((await labExec('pi1', [`${next}/bin/switch-to-configuration`, 'boot'])).exitCode).toBe(0);
    const running = (await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim();
    expect(running).not.toBe(next);
    const sleeper = run(['ssh', '-F', status.sshConfig, 'deploy@pi1', 'sleep 60; echo survived']);
    // Not root: refused, nothing happens.
    const refused = await ssh('deploy@pi1', '/run/current-system/sw/bin/systemctl reboot');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('Access denied');
    expect(await bootId()).toBe(before);
    const reboot = await ssh('deploy@pi1', `sudo -S -p '' /run/current-system/sw/bin/systemctl reboot`, `${LAB_SUDO_PASSWORD}\n`);
    expect(reboot.code === 0 || reboot.code === 255).toBe(true);
    expect((await sleeper).stdout).toBe('');
    let after = '';
    for (let attempt = 0; attempt < 100 && (after === '' || after === before); attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await bootId().catch(() => '');
    }
    expect(after).toMatch(/^[0-9a-f-]{36}$/u);
    expect(after).not.toBe(before);
    expect((await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim()).toBe(next);
    expect((await labExec('pi1', ['readlink', '/run/booted-system'])).stdout.trim()).toBe(next);
    // The boot ran the system's activation: its /etc, logged as `activate`.
    expect((await ssh('deploy@pi1', 'cat /etc/lab-next')).stdout).toBe('next');
    expect((await labExec('pi1', ['tail', '-n', '1', '/etc/lab-activations.log'])).stdout).toMatch(new RegExp(` activate ${next} uid=0 arch=aarch64\n$`, 'u'));
    // Every process of the old boot is gone; the host's daemons are new and answer.
    expect((await ssh('deploy@pi1', `nix-store --check-validity ${next} && echo valid`)).stdout).toBe('valid\n');
    expect((await labStatus()).hosts.find((host) => host.name === 'pi1')?.running).toBe(true);
    // Put back what the earlier tests left running (the next test expects the host as it was).
    expect((await labExec('pi1', [`${running}/bin/switch-to-configuration`, 'switch'])).exitCode).toBe(0);
  });

  it('cuts SSH sessions as a dropped link would, while new connections still work', async () => {
    const long = run(['ssh', '-F', status.sshConfig, 'deploy@pi1', 'sleep 30; echo finished']);
    let cut = 0;
    for (let attempt = 0; attempt < 50 && cut === 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      cut = await labCutSshSessions('pi1');
    }
    expect(cut).toBeGreaterThan(0);
    const result = await long;
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect((await ssh('deploy@pi1', 'echo back')).stdout).toBe('back\n');
  });

  it('limits the link to a host to a given rate, and lifts the limit again', async () => {
    // 1.4 MB: 1.4 s at 8 Mbit/s, several times what it takes unshaped even on a slow 2-CPU VM
    // (there loopback SSH moved ~4.5 MB/s while other tests ran, too close to a 40 Mbit/s limit).
    const payload = randomBytes(1024 * 1024).toString('base64');
    const secondsToSend = async () => {
      const started = performance.now();
      const result = await ssh('deploy@pi1', 'wc -c', payload);
      expect(result.stdout.trim()).toBe(String(payload.length));
      return (performance.now() - started) / 1000;
    };
    expect(await labShapeLink('pi1', { rateMbit: 8 })).toBe(8);
    const shaped = await secondsToSend();
    expect(shaped).toBeGreaterThan((payload.length * 8) / 8e6);
    expect(await labShapeLink('pi1', { rateMbit: undefined })).toBeUndefined();
    expect(await labShapeLink('pi1', { rateMbit: undefined })).toBeUndefined();
    const unshaped = await secondsToSend();
    expect(unshaped).toBeLessThan(shaped / 2);
    await expect(labShapeLink('pi1', { rateMbit: 0 })).rejects.toMatchObject({ code: 'PIDEPLOY_USAGE', hint: expect.stringContaining('--rate-mbit') });
  });

  it('is idempotent: up again reuses running hosts, keeps their stores, and re-applies the knobs', async () => {
    const toplevel = (await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim();
    const started = performance.now();
    const again = await labUp({ hosts: 2, hostSettings: { pi2: { trusted: false } } });
    expect((performance.now() - started) / 1000).toBeLessThan(5);
    expect(again.hosts.every((host) => host.running)).toBe(true);
    expect((await labExec('pi1', ['readlink', '/run/current-system'])).stdout.trim()).toBe(toplevel);
    // Re-apply with NOPASSWD sudo everywhere and pi1 untrusted: the daemon is restarted to see it.
    const changed = await labUp({ hosts: 2, nopasswd: true, untrusted: true });
    expect(changed.hosts.map((host) => [host.trusted, host.sudo, host.sudoPassword])).toEqual([
      [false, 'nopasswd', null],
      [false, 'nopasswd', null],
    ]);
    expect((await ssh('deploy@pi1', 'sudo -n id -u')).stdout).toBe('0\n');
    const fresh = await buildToplevel('x86_64-linux', '{ ... }: { networking.hostName = "untrusted-check"; }');
    const refused = await run(['nix-copy-closure', '--to', 'deploy@pi1', fresh], { env: nixEnv });
    expect(refused.stderr).toContain('lacks a valid signature');
    status = await labUp({ hosts: 2, hostSettings: { pi2: { trusted: false } } });
    expect((await ssh('deploy@pi1', 'sudo -n true')).stderr).toContain('a password is required');
  });

  it('limits a host store so that a copy fails with a full disk', async () => {
    const limited = await labUp({ hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { storeSizeMiB: 32 } } });
    expect(limited.hosts.find((host) => host.name === 'pi3')?.storeSizeMiB).toBe(32);
    const big = await run(
      ['nix-build', '--no-out-link', '-E', 'derivation { name = "lab-too-big"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; args = [ "-c" "head -c 48000000 /dev/urandom > $out" ]; }'],
      { env: nixEnv },
    );
    expect(big.code).toBe(0);
    const copy = await run(['nix-copy-closure', '--to', 'root@pi3', big.stdout.trim()], { env: nixEnv });
    expect(copy.code).not.toBe(0);
    expect(copy.stderr).toContain('No space left on device');
    const df = await labExec('pi3', ['df', '-m', '/nix']);
    expect(df.stdout).toContain('pideploy-lab-nix');
    // Up again with another size: the running host is restarted with it (here: back to the disk store).
    const unlimited = await labUp({ hosts: 3, hostSettings: { pi2: { trusted: false } } });
    expect(unlimited.hosts.find((host) => host.name === 'pi3')?.storeSizeMiB).toBeNull();
    expect((await labExec('pi3', ['df', '-m', '/nix'])).stdout).not.toContain('pideploy-lab-nix');
    const resized = await labUp({ hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { storeSizeMiB: 40 } } });
    expect(resized.hosts.find((host) => host.name === 'pi3')?.storeSizeMiB).toBe(40);
    expect((await labExec('pi3', ['df', '-m', '/nix'])).stdout).toMatch(/pideploy-lab-nix +40 /u);
  });

  it('tears down completely and idempotently', async () => {
    const binfmtWasOurs = (await labStatus()).aarch64.binfmtRegisteredByLab;
    await labDown();
    // Other lab instances (other developers' labs) may run at the same time: look only at ours.
    const ourNamespaces = new Set(status.hosts.map((host) => host.netns));
    const namespaces = (await run(['ip', 'netns', 'list'])).stdout.split('\n').map((line) => line.split(' ')[0]);
    expect(namespaces.filter((name) => name !== undefined && ourNamespaces.has(name))).toEqual([]);
    expect(existsSync(status.labDir)).toBe(false);
    // Nothing of the lab runs on. (A process still exiting, e.g. an ssh client of a test's copy on a
    // loaded machine, is given a few seconds; one that is left names itself in the failure.)
    const leftOver = async () => (await run(['pgrep', '-a', '-f', `${status.labDir}/`])).stdout;
    const settleBy = Date.now() + 5000;
    while ((await leftOver()) !== '' && Date.now() < settleBy) await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await leftOver()).toBe('');
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(`${status.labDir}/`);
    if (binfmtWasOurs) expect(existsSync('/proc/sys/fs/binfmt_misc/qemu-aarch64')).toBe(false);
    await labDown();
    expect((await labStatus()).up).toBe(false);
  });

  it('runs 20 hosts', async () => {
    const started = performance.now();
    const twenty = await labUp({ hosts: 20 });
    const seconds = (performance.now() - started) / 1000;
    expect(twenty.hosts).toHaveLength(20);
    expect(twenty.hosts.every((host) => host.running)).toBe(true);
    const last = await run(['ssh', '-F', twenty.sshConfig, 'deploy@pi20', 'hostname']);
    expect(last.stdout).toBe('pi20\n');
    console.log(`20 lab hosts up in ${seconds.toFixed(1)} s`);
    await labDown();
  });
});
