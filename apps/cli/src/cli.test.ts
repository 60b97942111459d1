import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { COMMANDS } from './commands.js';
import { createBufferIo } from './io.js';

const packageVersion = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

describe('runCli', () => {
  it('prints the version of the packages', async () => {
    const io = createBufferIo();
    expect(await runCli(['--version'], io)).toBe(0);
    expect(io.out()).toBe(`${packageVersion}\n`);
  });

  it('lists every command with --help and exits 0', async () => {
    const io = createBufferIo();
    expect(await runCli(['--help'], io)).toBe(0);
    for (const command of COMMANDS) expect(io.out()).toContain(command.usage);
  });

  it('shows usage and exits 2 without a command', async () => {
    const io = createBufferIo();
    expect(await runCli([], io)).toBe(2);
    expect(io.out()).toContain('Usage: pideploy <command>');
  });

  it('gives every command help with an example', async () => {
    for (const command of COMMANDS) {
      const io = createBufferIo();
      expect(await runCli([...command.path, '--help'], io)).toBe(0);
      expect(io.out()).toContain(`Usage: pideploy ${command.usage}`);
      expect(io.out()).toContain(`$ ${command.example}`);
    }
  });

  it('refuses a health-check URL that is not http(s) before connecting anywhere (exit 2)', async () => {
    const io = createBufferIo({ cwd: '/' });
    expect(await runCli(['activate', 'deploy@pi1', '--toplevel', '/nix/store/x-system', '--health-check-url', 'ftp://pi1/health'], io)).toBe(2);
    expect(io.err()).toBe('pideploy: --health-check-url takes an http(s) URL, not "ftp://pi1/health"\nhint: --health-check-url http://{hostname}:8080/health\n');
  });

  it('refuses --reboot where the host would not boot the system, and --reboot-timeout alone (exit 2, nothing connected)', async () => {
    const activate = async (...args: string[]) => {
      const io = createBufferIo({ cwd: '/' });
      return { code: await runCli(['activate', 'deploy@pi1', '--toplevel', '/nix/store/x-system', ...args], io), err: io.err() };
    };
    expect(await activate('--action', 'test', '--reboot')).toEqual({
      code: 2,
      err: 'pideploy: --reboot with --action test: test does not make the system the boot default, so the host would boot what it ran before\nhint: use --action boot (or switch) with --reboot\n',
    });
    expect((await activate('--action', 'dry-activate', '--reboot')).err).toMatch(/^pideploy: --reboot with --action dry-activate: dry-activate changes nothing to reboot into\n/u);
    expect(await activate('--reboot-timeout', '60')).toEqual({ code: 2, err: 'pideploy: --reboot-timeout without --reboot\nhint: add --reboot (pideploy deploy pi1 --action boot --reboot --reboot-timeout 600)\n' });
    expect((await activate('--reboot', '--reboot-timeout', 'soon')).err).toMatch(/^pideploy: --reboot-timeout takes a whole number of seconds of at least 1, not "soon"\n/u);
  });

  describe('upload-keys', () => {
    // pi1 has two keys (one from a file that exists, one from a command); pi2 one from a missing file. Nothing is reachable.
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-keys-'));
    writeFileSync(path.join(project, 'wifi.psk'), 'psk\n');
    writeFileSync(
      path.join(project, 'pideploy.json'),
      JSON.stringify({
        hosts: {
          pi1: { target: 'deploy@pi1.invalid', configuration: './configuration.nix', keys: { 'wifi.psk': { file: 'wifi.psk' }, token: { command: ['printf', 'abc'], destDir: '/var/lib/secrets', uploadAt: 'post-activation' } } },
          pi2: { target: 'deploy@pi2.invalid', configuration: './configuration.nix', keys: { db: { file: 'missing' } } },
          pi3: { target: 'deploy@pi3.invalid', configuration: './configuration.nix' },
        },
      }),
    );
    const uploadKeys = async (...args: string[]) => {
      const io = createBufferIo({ cwd: project });
      return { code: await runCli(['upload-keys', ...args], io), out: io.out(), err: io.err() };
    };

    it('--dry-run reads every key and says where it would go, connecting to nothing', async () => {
      const run = await uploadKeys('pi1', '--dry-run');
      expect(run.code).toBe(0);
      expect(run.err).toContain('[pi1] would upload key wifi.psk → /run/keys/wifi.psk (0600 root:root, pre-activation, 4 bytes)');
      expect(run.err).toContain('[pi1] would upload key token → /var/lib/secrets/token (0600 root:root, post-activation, 3 bytes)');
      expect(run.out).toBe('pi1: dry run, nothing uploaded\n');
    });

    it('refuses a bad --at, a host without keys, and a key file that is missing (before any connection)', async () => {
      expect(await uploadKeys('--at', 'later')).toMatchObject({ code: 2, err: 'pideploy: --at must be one of pre-activation, post-activation, not "later"\nhint: pideploy upload-keys pi1 --at post-activation\n' });
      expect(await uploadKeys('pi3')).toMatchObject({ code: 2, err: expect.stringMatching(/^pideploy: no keys to upload to pi3\nhint: add keys to pideploy.json/u) });
      const missing = await uploadKeys('pi2', '--dry-run');
      expect(missing.code).toBe(1);
      expect(missing.err).toBe(`pideploy: key db: cannot read the key file ${path.join(project, 'missing')}: ENOENT\nhint: create it (keep it out of git), or fix the key's "file" in pideploy.json\n`);
    });
  });

  it('refuses a --target with spaces or shell characters for deploy and add-host, before reading pideploy.json (exit 2)', async () => {
    for (const [command, target] of [['deploy', 'deploy@pi1;reboot'], ['add-host', 'deploy@pi1 -oProxyCommand=x']] as const) {
      const io = createBufferIo({ cwd: '/' });
      expect(await runCli([command, 'pi1', '--target', target], io)).toBe(2);
      expect(io.err()).toBe(`pideploy: --target "${target}" is not an SSH target\nhint: use user@host, user@host:port or an ssh_config Host alias (no spaces or shell characters)\n`);
    }
  });

  it('refuses a fleet rollback that cannot be done, before connecting (exit 2)', async () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-rollback-'));
    writeFileSync(path.join(project, 'pideploy.json'), JSON.stringify({ hosts: { pi1: { target: 'deploy@pi1.invalid', configuration: './c.nix', tags: ['fleet'] }, pi2: { target: 'deploy@pi2.invalid', configuration: './c.nix', tags: ['fleet'] } } }));
    const rollback = async (...args: string[]) => {
      const io = createBufferIo({ cwd: project });
      return { code: await runCli(['rollback', ...args], io), err: io.err() };
    };
    expect(await rollback()).toEqual({ code: 2, err: 'pideploy: expected the host(s) to roll back\nhint: pideploy rollback <host…|--on @tag> [--to N] [--action switch|boot] [--reboot] [--parallel N]\n' });
    expect(await rollback('--on', '@fleet', '--to', '4')).toEqual({
      code: 2,
      err: "pideploy: --to 4 is one host's generation, but 2 hosts are selected (pi1, pi2)\nhint: without --to each host goes back to its previous generation; or name one host\n",
    });
    expect(await rollback('pi1', 'pi2', '--ssh-config', '/dev/null')).toMatchObject({ code: 2, err: expect.stringMatching(/^pideploy: --ssh-config is for one host given by its SSH target\n/u) });
    expect(await rollback('@nope')).toMatchObject({ code: 1, err: expect.stringMatching(/^pideploy: no host has the tag "nope" in .*\nhint: tags: @fleet\n$/u) });
  });

  describe('health checks of deploy', () => {
    // A project whose pi1 has a health check in pideploy.json (and no pins yet: nothing gets far).
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-health-'));
    writeFileSync(
      path.join(project, 'pideploy.json'),
      JSON.stringify({ hosts: { pi1: { target: 'deploy@pi1', configuration: './configuration.nix', healthCheck: { command: 'systemctl is-active --quiet nginx' } }, pi2: { target: 'deploy@pi2', configuration: './configuration.nix' } } }),
    );
    const deploy = async (...args: string[]) => {
      const io = createBufferIo({ cwd: project });
      return { code: await runCli(['deploy', ...args], io), err: io.err() };
    };

    it('refuses checks given with nothing to gate, before the pin check (exit 2)', async () => {
      expect(await deploy('pi2', '--no-rollback', '--health-check-command', 'true')).toEqual({
        code: 2,
        err: 'pideploy: pi2 has a health check, but the magic rollback is off: the check runs before the confirmation (or after a reboot), and nothing would roll back a failed one\nhint: drop --no-rollback, or the health check (--no-health-check)\n',
      });
      expect((await deploy('--action', 'boot', '--health-check-url', 'http://{hostname}/')).err).toMatch(/^pideploy: pi1 has a health check, but --action boot has no confirmation.*\nhint: .*or boot with --reboot \(the check then runs once the host is back\)/u);
      // With --reboot and no rollback, nothing would roll back a failed check after the reboot either.
      expect((await deploy('pi2', '--action', 'boot', '--reboot', '--no-rollback', '--health-check-command', 'true')).err).toMatch(/^pideploy: pi2 has a health check, but the magic rollback is off/u);
      expect((await deploy('--no-health-check', '--health-check-timeout', '5')).err).toBe('pideploy: --no-health-check contradicts the other --health-check-* flags\nhint: give one or the other\n');
      expect((await deploy('--health-check-url', 'http://{ip}/')).err).toMatch(/^pideploy: the health check URL http:\/\/\{ip\}\/ has an unknown placeholder \{ip\}\n/u);
    });

    it("skips pideploy.json's check, with a warning, for an action with no confirmation", async () => {
      const boot = await deploy('pi1', '--action', 'boot');
      expect(boot.err).toContain("pi1's health check (pideploy.json) is skipped: action boot has no confirmation");
      // Then it goes on, to the pin check.
      expect(boot.err).toContain('pins');
      expect(boot.code).not.toBe(0);
      expect((await deploy('pi1', '--action', 'boot', '--no-health-check')).err).not.toContain('health check');
    });

    it('takes --reboot-if-needed with switch only, and not with --reboot (exit 2, before the pin check)', async () => {
      expect(await deploy('pi2', '--action', 'boot', '--reboot-if-needed')).toEqual({
        code: 2,
        err: 'pideploy: --reboot-if-needed with --action boot: it reboots a switched host whose new kernel (initrd, kernel modules) only a boot loads\nhint: use --reboot: a boot always needs its reboot\n',
      });
      expect((await deploy('pi2', '--action', 'test', '--reboot-if-needed')).err).toMatch(/^pideploy: --reboot-if-needed with --action test: .*\nhint: use it with --action switch \(the default\)\n$/u);
      expect(await deploy('pi2', '--reboot', '--reboot-if-needed')).toEqual({ code: 2, err: 'pideploy: --reboot and --reboot-if-needed contradict each other\nhint: give one of them\n' });
      // With switch it is accepted (with its timeout), and the deployment goes on to the pin check.
      const accepted = await deploy('pi2', '--reboot-if-needed', '--reboot-timeout', '600');
      expect([accepted.code, accepted.err]).toEqual([1, expect.stringContaining('pins')]);
    });

    it('keeps the checks for a boot with --reboot: they run once the host is back', async () => {
      // Given or from pideploy.json, they are accepted and the deployment goes on to the pin check.
      for (const args of [['pi1', '--action', 'boot', '--reboot'], ['pi2', '--action', 'boot', '--reboot', '--health-check-command', 'true']]) {
        const boot = await deploy(...args);
        expect(boot.err).not.toContain('health check');
        expect(boot.err).toContain('pins');
        expect(boot.code).toBe(1);
      }
    });
  });

  describe('the bundle of pideploy build, taken when no store path is given', () => {
    const project = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-built-'));
    writeFileSync(path.join(project, 'pideploy.json'), JSON.stringify({ hosts: { pi1: { target: 'deploy@pi1', configuration: './configuration.nix' } } }));
    const run = async (cwd: string, ...args: string[]) => {
      const io = createBufferIo({ cwd });
      return { code: await runCli(args, io), err: io.err() };
    };

    it('says to build the host first when it has no built bundle, before asking for a password or connecting (exit 2)', async () => {
      expect(await run(project, 'activate', 'pi1', '--sudo-password-stdin')).toEqual({ code: 2, err: 'pideploy: pi1 has no built bundle yet\nhint: pideploy build pi1 first (or give the store path with --toplevel)\n' });
      expect(await run(project, 'diff', 'pi1')).toEqual({ code: 2, err: 'pideploy: pi1 has no built bundle yet\nhint: pideploy build pi1 first (or give the store path with --toplevel)\n' });
      expect(await run(project, 'copy', 'pi1', '--sudo-password-stdin')).toEqual({ code: 2, err: 'pideploy: pi1 has no built bundle yet\nhint: pideploy build pi1 first (or give the store path with --path)\n' });
    });

    it('wants the store path for a host that is not in pideploy.json (exit 2)', async () => {
      expect(await run(project, 'activate', 'deploy@pi.local')).toEqual({ code: 2, err: 'pideploy: deploy@pi.local is not a host of pideploy.json: give the store path with --toplevel\nhint: pideploy activate deploy@pi.local --toplevel /nix/store/…\n' });
      expect(await run('/', 'copy', 'deploy@pi.local')).toEqual({ code: 2, err: 'pideploy: deploy@pi.local is not a host of a pideploy.json (none found): give the store path with --path\nhint: pideploy copy deploy@pi.local --path /nix/store/…\n' });
    });

    it('refuses a --toplevel that is not the system of the --bundle given with it (exit 2, before any password)', async () => {
      const bundle = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-bundle-'));
      symlinkSync('/nix/store/00000000000000000000000000000000-nixos-system-pi1', path.join(bundle, 'toplevel'));
      expect(await run(project, 'activate', 'pi1', '--bundle', bundle, '--toplevel', '/nix/store/11111111111111111111111111111111-nixos-system-pi1', '--sudo-password-stdin')).toEqual({
        code: 2,
        err: `pideploy: the bundle ${bundle} holds /nix/store/00000000000000000000000000000000-nixos-system-pi1, not --toplevel /nix/store/11111111111111111111111111111111-nixos-system-pi1\nhint: drop --toplevel: the bundle's system is the one activated\n`,
      });
    });

    it('refuses a --bundle that is not a bundle (no toplevel link), naming it (exit 2)', async () => {
      const notBundle = mkdtempSync(path.join(os.tmpdir(), 'pideploy-cli-not-bundle-'));
      expect(await run(project, 'diff', 'pi1', '--bundle', notBundle)).toEqual({
        code: 2,
        err: `pideploy: ${notBundle} is not a bundle here (no toplevel link in it)\nhint: give the system with --toplevel P, or build the bundle here first (pideploy build pi1)\n`,
      });
    });
  });

  it('refuses bad Nix settings flags of build and deploy before reading pideploy.json (exit 2)', async () => {
    const run = async (...args: string[]) => {
      const io = createBufferIo({ cwd: '/' });
      return { code: await runCli(args, io), err: io.err() };
    };
    expect(await run('build', 'pi1', '--option', 'sandbox')).toEqual({
      code: 2,
      err: 'pideploy: --option takes NAME=VALUE, not "sandbox"\nhint: for example --option sandbox=true (a nix.conf setting and its value)\n',
    });
    expect(await run('deploy', 'pi1', '--option=--impure=1')).toMatchObject({ code: 2, err: expect.stringMatching(/^pideploy: "--impure" is not a Nix setting name\n/u) });
    expect(await run('build', '-j', 'many')).toMatchObject({ code: 2, err: expect.stringMatching(/^pideploy: --max-jobs takes a whole number or auto, not "many"\n/u) });
    expect(await run('deploy', '--cores', '-2')).toMatchObject({ code: 2 });
    expect(await run('build', '--option', 'cores=1', '--option', 'cores=2')).toMatchObject({ code: 2, err: expect.stringMatching(/^pideploy: --option cores is given twice, with "1" and "2"\n/u) });
  });

  it('rejects an unknown command with one line, a hint and exit 2', async () => {
    const io = createBufferIo();
    expect(await runCli(['deploi'], io)).toBe(2);
    expect(io.err()).toBe('pideploy: unknown command: deploi\nhint: run `pideploy --help` to see the commands\n');
  });

  it('rejects an unknown flag with the command usage and exit 2', async () => {
    const io = createBufferIo();
    expect(await runCli(['lab', 'up', '--hostz', '3'], io)).toBe(2);
    expect(io.err()).toMatch(/^pideploy: Unknown option '--hostz'.*\nhint: usage: pideploy lab up/su);
  });

  it('rejects a bad --hosts value before doing anything', async () => {
    const io = createBufferIo();
    const code = await runCli(['lab', 'up', '--hosts', 'many', '--lab-dir', '/nonexistent/pideploy-test'], io);
    expect(code).toBe(2);
    expect(io.err()).toContain('--hosts must be a whole number from 1 to 50, not "many"');
  });

  it('lab link wants one host and exactly one of --rate-mbit N and --unshaped', async () => {
    for (const argv of [['lab', 'link', 'pi1'], ['lab', 'link', 'pi1', '--rate-mbit', '5', '--unshaped'], ['lab', 'link', '--unshaped']]) {
      const io = createBufferIo();
      expect(await runCli([...argv, '--lab-dir', '/nonexistent/pideploy-test'], io)).toBe(2);
      expect(io.err()).toBe('pideploy: lab link needs one host and either --rate-mbit N or --unshaped\nhint: pideploy lab link pi1 --rate-mbit 100   (later: pideploy lab link pi1 --unshaped)\n');
    }
    const io = createBufferIo();
    expect(await runCli(['lab', 'link', 'pi1', '--rate-mbit', 'fast', '--lab-dir', '/nonexistent/pideploy-test'], io)).toBe(2);
    expect(io.err()).toContain('--rate-mbit takes a whole number of Mbit/s of at least 1, not "fast"');
  });

  it('reports errors as NDJSON on stdout with --json', async () => {
    const io = createBufferIo();
    expect(await runCli(['lab', 'exec', '--json'], io)).toBe(2);
    const line = JSON.parse(io.out().trim()) as { error: { code: string; hint: string } };
    expect(line.error.code).toBe('PIDEPLOY_USAGE');
    expect(line.error.hint).toContain('pideploy lab exec pi1');
  });

  it('describes an absent lab without root', async () => {
    const io = createBufferIo();
    expect(await runCli(['lab', 'status', '--lab-dir', '/nonexistent/pideploy-test'], io)).toBe(0);
    expect(io.out()).toContain('the lab is not up');
    const jsonIo = createBufferIo();
    expect(await runCli(['lab', 'status', '--json', '--lab-dir', '/nonexistent/pideploy-test'], jsonIo)).toBe(0);
    const status = (JSON.parse(jsonIo.out()) as { result: { up: boolean; hosts: unknown[] } }).result;
    expect(status.up).toBe(false);
    expect(status.hosts).toEqual([]);
  });
});
