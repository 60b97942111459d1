import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { labDown, labExec, labRebootHost, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount, sudoLogFrom, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { deployResultsOf, runBuiltPideploy, runBuiltPideployWithLabSudo } from '../testing/built-cli.js';

interface HostResult {
  readonly host: string;
  readonly ok: boolean;
  readonly toplevel?: string;
  readonly keys?: readonly { readonly name: string; readonly path: string; readonly changed: boolean }[];
  readonly keysRemoved?: readonly { readonly path: string; readonly outcome: string }[];
  readonly activation?: { readonly outcome: string };
  readonly reboot?: { readonly outcome: string; readonly healthChecked: boolean };
  readonly error?: { readonly code: string; readonly message: string; readonly hint?: string };
}

const pideploy = (args: readonly string[], cwd: string, env: NodeJS.ProcessEnv) => runBuiltPideployWithLabSudo(args, { cwd, env });
/** `pideploy status HOST` (no sudo, so no password). */
const statusOf = async (host: string, cwd: string, env: NodeJS.ProcessEnv) => (await runBuiltPideploy(['status', host], { cwd, env })).stdout;
const onConsole = async (host: string, command: string) => (await labExec(host, ['sh', '-c', command])).stdout.trim();
/** Mode, owner, group and content of a file on a lab host (as root, on its console). */
const fileOn = (host: string, file: string) => onConsole(host, `stat -c '%a %U %G' ${file} && cat ${file}`);

/** Secrets the test writes: none may show in any output, event, log or argv. */
const WIFI = 'wifi-psk-7f3a9c';
const TOKEN = 'api-token-5be21d';
const AFTER = 'post-secret-91c4e0';

describeLab('keys: secrets outside the store, uploaded by deploy and upload-keys (lab: password sudo)', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  const setSalt = (salt: string) => writeFile(path.join(project, 'configuration.nix'), `{ ... }: { imports = [ ./common.nix ]; environment.etc."pideploy-keys".text = "${salt}"; }\n`);
  const configFile = () => path.join(project, 'pideploy.json');
  const editConfig = async (edit: (config: { defaults: Record<string, unknown>; hosts: Record<string, Record<string, unknown>> }) => void) => {
    const config = JSON.parse(readFileSync(configFile(), 'utf8')) as { defaults: Record<string, unknown>; hosts: Record<string, Record<string, unknown>> };
    edit(config);
    await writeFile(configFile(), `${JSON.stringify(config, null, 2)}\n`);
  };

  beforeAll(async () => {
    status = await labUp({ hosts: 2 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-keys-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
    await rename(path.join(project, 'configuration.nix'), path.join(project, 'common.nix'));
    await setSalt('first');
    await mkdir(path.join(project, 'secrets'));
    await writeFile(path.join(project, 'secrets', 'wifi.psk'), `${WIFI}\n`, { mode: 0o600 });
    await writeFile(path.join(project, 'secrets', 'after'), AFTER, { mode: 0o600 });
    await editConfig((config) => {
      // Every host gets the Wi-Fi key (defaults); pi1 also a token from a command and a key after its activation.
      config.defaults['keys'] = { 'wifi.psk': { file: 'secrets/wifi.psk' } };
      config.hosts['pi1'] = {
        ...config.hosts['pi1'],
        keys: {
          token: { command: ['sh', '-c', `printf '%s-%s' api-token 5be21d`], destDir: '/etc/secrets', user: 'nobody', group: 'nogroup', permissions: '0640' },
          after: { file: 'secrets/after', destDir: '/etc/secrets', uploadAt: 'post-activation' },
        },
      };
    });
  });
  afterAll(async () => {
    await labDown();
  });

  it('deploy puts each key in place with its owner and mode, before (or after) the activation, in one root command each; no secret in any output or log', async () => {
    const pi1 = status.hosts[0];
    if (pi1 === undefined) throw new Error('no lab host');
    const passwordChecks = sudoPasswordChecksFrom(pi1);
    const sudoRan = sudoLogFrom(pi1);
    const run = await pideploy(['deploy', '--parallel', '2', '--json'], project, env);
    expect(run.stderr).not.toContain('pideploy:');
    expect(run.code).toBe(0);
    const results = deployResultsOf<HostResult>(run.stdout);
    expect(results.map((host) => [host.host, host.ok, host.activation?.outcome])).toEqual([
      ['pi1', true, 'confirmed'],
      ['pi2', true, 'confirmed'],
    ]);
    expect(results[0]?.keys).toEqual([
      { name: 'wifi.psk', path: '/run/keys/wifi.psk', changed: true },
      { name: 'token', path: '/etc/secrets/token', changed: true },
      { name: 'after', path: '/etc/secrets/after', changed: true },
    ]);
    expect(results[1]?.keys).toEqual([{ name: 'wifi.psk', path: '/run/keys/wifi.psk', changed: true }]);
    expect(await fileOn('pi1', '/run/keys/wifi.psk')).toBe(`600 root root\n${WIFI}`);
    expect(await fileOn('pi1', '/etc/secrets/token')).toBe(`640 nobody nogroup\n${TOKEN}`);
    expect(await fileOn('pi1', '/etc/secrets/after')).toBe(`600 root root\n${AFTER}`);
    expect(await fileOn('pi2', '/run/keys/wifi.psk')).toBe(`600 root root\n${WIFI}`);
    // (A lab host's /etc is its own; its /var is this machine's.)
    expect(await onConsole('pi2', 'ls -A /run/keys; ls /etc/secrets 2>&1 | head -1')).toBe('wifi.psk\nls: cannot access \'/etc/secrets\': No such file or directory');
    // pi1's events: the pre-activation keys before the activation starts, the post-activation key after it ended.
    const events = run.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { event?: { type: string; host?: string; phase?: string } }).event).filter((event) => event?.host === 'pi1');
    const order = events.map((event) => (event?.type === 'phase-start' && event.phase === 'keys' ? 'keys' : event?.type)).filter((type) => type === 'keys' || type === 'activate-start' || type === 'activate-end');
    expect(order).toEqual(['keys', 'activate-start', 'activate-end', 'keys']);
    // No secret anywhere: not in the output, not in what sudo logged of the commands it ran.
    for (const secret of [WIFI, TOKEN, AFTER]) {
      expect(run.stdout + run.stderr).not.toContain(secret);
      expect(sudoRan().join('\n')).not.toContain(secret);
    }
    // One root command (one password check) per upload: the copy, the keys, the activation, its confirmation, the key after it.
    const checks = passwordChecks().map((line) => line.replace(/\/nix\/store\/\S+\/bin\/activate/u, 'activate').replace(/ -c command -v base64 .*? pideploy-keys /u, ' -c <installer> pideploy-keys ').replace(/ (switch|confirm) .*$/u, ' $1'));
    expect(checks).toEqual([
      'deploy sudo -k -S -p  -- nix-store --serve --write',
      'deploy sudo -k -S -p  -- /bin/sh -c <installer> pideploy-keys /nix/var/pideploy/keys 2 wifi.psk /run/keys root root 0600 token /etc/secrets nobody nogroup 0640',
      'deploy sudo -k -S -p  -- /bin/sh activate switch',
      'deploy sudo -k -S -p  -- /bin/sh activate confirm',
      'deploy sudo -k -S -p  -- /bin/sh -c <installer> pideploy-keys /nix/var/pideploy/keys 1 after /etc/secrets root root 0600',
    ]);

    // Again, nothing changed: every key is left alone, the activation skipped.
    const again = await pideploy(['deploy', 'pi1', '--json'], project, env);
    expect(again.code).toBe(0);
    const [noop] = deployResultsOf<HostResult>(again.stdout);
    expect(noop?.activation?.outcome).toBe('skipped');
    expect(noop?.keys?.map((key) => [key.name, key.changed])).toEqual([
      ['wifi.psk', false],
      ['token', false],
      ['after', false],
    ]);
    // The table shows the keys' column.
    const table = await pideploy(['deploy', 'pi2'], project, env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^host +result +connect +build +bundle +diff +copy +keys +activate$/mu);
  });

  it('a key the host cannot take fails its host before the activation, writing no key; a missing key file stops the deployment before any host is touched', async () => {
    const pi2 = status.hosts[1];
    if (pi2 === undefined) throw new Error('no lab host');
    const running = await onConsole('pi2', 'readlink /run/current-system');
    await setSalt('second');
    await writeFile(path.join(project, 'secrets', 'wifi.psk'), 'a new psk\n');
    await editConfig((config) => {
      config.hosts['pi2'] = { ...config.hosts['pi2'], keys: { 'db.pass': { file: 'secrets/after', user: 'no-such-user' } } };
    });
    const run = await pideploy(['deploy', 'pi2', '--json'], project, env);
    expect(run.code).toBe(1);
    const [failed] = deployResultsOf<HostResult>(run.stdout);
    expect(failed?.error?.code).toBe('PIDEPLOY_KEY_UPLOAD_FAILED');
    expect(failed?.error?.message).toBe('uploading keys to pi2 failed: key db.pass: there is no user no-such-user on pi2');
    expect(failed?.error?.hint).toContain('"uploadAt": "post-activation"');
    expect(failed?.activation).toBeUndefined();
    expect(await onConsole('pi2', 'readlink /run/current-system')).toBe(running);
    expect(await fileOn('pi2', '/run/keys/wifi.psk')).toBe(`600 root root\n${WIFI}`);
    expect(await onConsole('pi2', 'ls -A /run/keys')).toBe('wifi.psk');

    // A key file that is not there: one line and a hint, before any login.
    await editConfig((config) => {
      config.hosts['pi2'] = { ...config.hosts['pi2'], keys: { 'db.pass': { file: 'secrets/missing' } } };
    });
    const logins = sshLoginCount(pi2);
    const missing = await pideploy(['deploy', 'pi2'], project, env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`pideploy: key db.pass: cannot read the key file ${path.join(project, 'secrets', 'missing')}: ENOENT`);
    expect(missing.stderr).toContain('hint: create it');
    expect(sshLoginCount(pi2)).toBe(logins);

    // Both a file and a command: refused by the config loader, naming the JSON path.
    await editConfig((config) => {
      config.hosts['pi2'] = { ...config.hosts['pi2'], keys: { 'db.pass': { file: 'secrets/after', command: ['true'] } } };
    });
    const both = await pideploy(['deploy', 'pi2'], project, env);
    expect(both.code).not.toBe(0);
    expect(both.stderr).toContain(`${configFile()}: /hosts/pi2/keys/db.pass: has both "file" and "command"`);
    await editConfig((config) => {
      delete config.hosts['pi2']?.['keys'];
    });
  });

  it('upload-keys updates what changed without deploying; --dry-run lists and connects to nothing', async () => {
    const pi1 = status.hosts[0];
    if (pi1 === undefined) throw new Error('no lab host');
    // A dry activation changes nothing on the host: the keys (pi1's Wi-Fi key has a new content now) are only listed.
    const dryActivate = await pideploy(['deploy', 'pi1', '--action', 'dry-activate'], project, env);
    expect(dryActivate.code).toBe(0);
    expect(dryActivate.stderr).toContain('[pi1] would upload key wifi.psk → /run/keys/wifi.psk (0600 root:root, pre-activation, 10 bytes) (not with dry-activate)');
    expect(dryActivate.stderr).toContain('[pi1] would upload key after → /etc/secrets/after (0600 root:root, post-activation, 18 bytes) (not with dry-activate)');
    expect(await fileOn('pi1', '/run/keys/wifi.psk')).toBe(`600 root root\n${WIFI}`);
    const running = await onConsole('pi1', 'readlink /run/current-system');
    const logins = sshLoginCount(pi1);
    const dry = await pideploy(['upload-keys', 'pi1', '--dry-run'], project, env);
    expect(dry.code).toBe(0);
    expect(dry.stderr).toContain('would upload key wifi.psk → /run/keys/wifi.psk (0600 root:root, pre-activation, 10 bytes)');
    expect(dry.stderr).toContain('would upload key after → /etc/secrets/after (0600 root:root, post-activation, 18 bytes)');
    expect(sshLoginCount(pi1)).toBe(logins);

    const run = await pideploy(['upload-keys', 'pi1', '--json'], project, env);
    expect(run.stderr).not.toContain('pideploy:');
    expect(run.code).toBe(0);
    const result = (JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { result: { ok: boolean; results: { host: string; keys: { name: string; changed: boolean }[] }[] } }).result;
    expect(result.results.map((host) => [host.host, host.keys.map((key) => [key.name, key.changed])])).toEqual([
      ['pi1', [['wifi.psk', true], ['token', false], ['after', false]]],
    ]);
    expect(await fileOn('pi1', '/run/keys/wifi.psk')).toBe('600 root root\na new psk');
    expect(await onConsole('pi1', 'readlink /run/current-system')).toBe(running);
    expect(run.stdout + run.stderr).not.toContain('a new psk');
    // Only the keys after the activation, as text.
    const after = await pideploy(['upload-keys', 'pi1', '--at', 'post-activation'], project, env);
    expect([after.code, after.stdout.trim()]).toEqual([0, 'pi1: nothing changed']);
    const none = await pideploy(['upload-keys', 'pi2', '--at', 'post-activation'], project, env);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('pideploy: no keys to upload to pi2');
  });

  it('after a reboot pideploy made, the keys under /run (emptied at boot) are uploaded again, before the health check', async () => {
    await setSalt('third');
    // The check (as the login user) passes only with the key in place: after the reboot too.
    const run = await pideploy(['deploy', 'pi1', '--reboot', '--reboot-timeout', '60', '--health-check-command', 'test -e /run/keys/wifi.psk', '--json'], project, env);
    expect(run.stderr).not.toContain('pideploy:');
    expect(run.code).toBe(0);
    const [host] = deployResultsOf<HostResult>(run.stdout);
    expect(host?.reboot?.outcome).toBe('rebooted');
    expect(host?.reboot?.healthChecked).toBe(true);
    // Before the activation the two pre-activation keys (in place already); after the reboot the
    // one under /run (gone with the boot) and the post-activation one.
    expect(host?.keys?.map((key) => [key.name, key.changed])).toEqual([
      ['wifi.psk', false],
      ['token', false],
      ['wifi.psk', true],
      ['after', false],
    ]);
    expect(await fileOn('pi1', '/run/keys/wifi.psk')).toBe('600 root root\na new psk');
    expect(await fileOn('pi1', '/etc/secrets/token')).toBe(`640 nobody nogroup\n${TOKEN}`);
  });

  it('after a reboot pideploy did not make, status says which keys under /run are missing, until upload-keys puts them back', async () => {
    expect(await statusOf('pi1', project, env)).not.toContain('missing:');
    await labRebootHost('pi1');
    const rebooted = await statusOf('pi1', project, env);
    expect(rebooted).toContain('\n  missing:   /run/keys/wifi.psk (in pideploy.json, not on the host: never uploaded, or under /run and gone since a reboot; pideploy upload-keys pi1)\n');
    expect(rebooted).toMatch(/\n {2}keys: {6}\/etc\/secrets\/\S+, \/etc\/secrets\/\S+\n/u);
    expect((await runBuiltPideploy(['status', 'pi1', '--short'], { cwd: project, env })).stdout).toMatch(/^pi1 .* 1 key missing$/mu);
    const upload = await pideploy(['upload-keys', 'pi1'], project, env);
    expect(upload.code, upload.stderr).toBe(0);
    expect(await fileOn('pi1', '/run/keys/wifi.psk')).toBe('600 root root\na new psk');
    expect(await statusOf('pi1', project, env)).not.toContain('missing:');
  });

  it('a key dropped from pideploy.json is removed by the next deploy once the host runs its new system, not when it rolls back', async () => {
    const pi1 = status.hosts[0];
    if (pi1 === undefined) throw new Error('no lab host');
    await editConfig((config) => {
      const keys = config.hosts['pi1']?.['keys'] as Record<string, unknown>;
      delete keys['token'];
    });
    // upload-keys leaves it (the running system may still read it) and says a deploy removes it.
    const upload = await pideploy(['upload-keys', 'pi1'], project, env);
    expect(upload.code).toBe(0);
    expect(upload.stderr).toContain('pi1 still has keys pideploy.json no longer names: /etc/secrets/token (the next deploy removes them)');
    const dry = await pideploy(['deploy', 'pi1', '--dry-run'], project, env);
    expect(dry.stderr).toContain('[pi1] would remove key /etc/secrets/token (no longer in pideploy.json)');
    // A dry activation lists it too, removes nothing, and is no deployment to record.
    const recordBefore = readFileSync(path.join(project, '.pideploy', 'deployments.json'), 'utf8');
    const dryActivate = await pideploy(['deploy', 'pi1', '--action', 'dry-activate'], project, env);
    expect(dryActivate.code, dryActivate.stderr).toBe(0);
    expect(dryActivate.stderr).toContain('[pi1] would remove key /etc/secrets/token (not with dry-activate)');
    expect(await fileOn('pi1', '/etc/secrets/token')).toBe(`640 nobody nogroup\n${TOKEN}`);
    expect(readFileSync(path.join(project, '.pideploy', 'deployments.json'), 'utf8')).toBe(recordBefore);

    // A new system that fails its health check rolls back: the old one may need the key, it stays.
    await setSalt('fourth');
    const rolledBack = await pideploy(['deploy', 'pi1', '--health-check-command', 'false', '--json'], project, env);
    expect(rolledBack.code).toBe(1);
    expect(deployResultsOf<HostResult>(rolledBack.stdout)[0]?.keysRemoved).toBeUndefined();
    expect(await fileOn('pi1', '/etc/secrets/token')).toBe(`640 nobody nogroup\n${TOKEN}`);

    // Switched and confirmed: removed in the root command of the post-activation key (no extra password check).
    const checks = sudoPasswordChecksFrom(pi1);
    const run = await pideploy(['deploy', 'pi1', '--json'], project, env);
    expect(run.stderr).not.toContain('pideploy:');
    expect(run.code).toBe(0);
    const [host] = deployResultsOf<HostResult>(run.stdout);
    expect(host?.activation?.outcome).toBe('confirmed');
    expect(host?.keysRemoved).toEqual([{ path: '/etc/secrets/token', outcome: 'removed' }]);
    expect(await onConsole('pi1', 'ls -A /etc/secrets; ls -A /run/keys')).toBe('after\nwifi.psk');
    expect(checks().map((line) => line.replace(/^deploy sudo -k -S -p {2}(-- )?/u, '').split(' ')[0])).toEqual(['nix-store', '/bin/sh', expect.any(String), expect.any(String), '/bin/sh']);
    expect(checks().at(-1)).toContain('/etc/secrets/token');
    expect(JSON.parse(readFileSync(path.join(project, '.pideploy', 'deployments.json'), 'utf8')).hosts.pi1.keys).toEqual(['/etc/secrets/after', '/run/keys/wifi.psk']);
    const again = await pideploy(['deploy', 'pi1', '--json'], project, env);
    expect(deployResultsOf<HostResult>(again.stdout)[0]?.keysRemoved).toBeUndefined();

    // A host left with no keys at all: a redeploy (its system unchanged) removes its last one, in a root command of its own.
    await editConfig((config) => {
      delete config.defaults['keys'];
    });
    expect(await fileOn('pi2', '/run/keys/wifi.psk')).toBe(`600 root root\n${WIFI}`);
    const emptied = await pideploy(['deploy', 'pi2', '--json'], project, env);
    expect(emptied.code, emptied.stderr).toBe(0);
    expect(deployResultsOf<HostResult>(emptied.stdout)[0]?.keysRemoved).toEqual([{ path: '/run/keys/wifi.psk', outcome: 'removed' }]);
    expect(await onConsole('pi2', 'ls -A /run/keys')).toBe('');
  });

  it('a key put on a host from another clone of the project is removed by the next deploy from this one: the host keeps its own record of key files', async () => {
    // Another clone: the same files, without this one's .pideploy (its record); it gives pi2 a key.
    const other = await mkdtemp(path.join(os.tmpdir(), 'pideploy-keys-clone-'));
    await cp(project, other, { recursive: true, filter: (source) => path.basename(source) !== '.pideploy' });
    const otherConfig = JSON.parse(readFileSync(path.join(other, 'pideploy.json'), 'utf8')) as { hosts: Record<string, Record<string, unknown>> };
    otherConfig.hosts['pi2'] = { ...otherConfig.hosts['pi2'], keys: { 'clone.key': { file: 'secrets/after', destDir: '/etc/secrets' } } };
    await writeFile(path.join(other, 'pideploy.json'), `${JSON.stringify(otherConfig, null, 2)}\n`);
    const fromOther = await pideploy(['deploy', 'pi2'], other, env);
    expect(fromOther.code, fromOther.stderr).toBe(0);
    expect(await fileOn('pi2', '/etc/secrets/clone.key')).toBe(`600 root root\n${AFTER}`);
    // The host's record (places only, readable by the login user) lists it; this clone's record does not.
    // (After the boot it was written in: the host's boot id.)
    const bootId = (await onConsole('pi2', 'cat /proc/sys/kernel/random/boot_id')).trim();
    expect((await labExec('pi2', ['su', '-s', '/bin/sh', 'deploy', '-c', 'cat /nix/var/pideploy/keys'])).stdout).toBe(`# boot ${bootId}\n/etc/secrets/clone.key\n`);
    expect(JSON.parse(readFileSync(path.join(project, '.pideploy', 'deployments.json'), 'utf8')).hosts.pi2.keys ?? []).not.toContain('/etc/secrets/clone.key');
    // status reads the host's record: a key of that clone's pideploy.json there, an old one here.
    expect(await statusOf('pi2', other, env)).toContain('\n  keys:      /etc/secrets/clone.key\n');
    const statusHere = await statusOf('pi2', project, env);
    expect(statusHere).toContain('\n  old keys:  /etc/secrets/clone.key (no longer in pideploy.json: the next deploy removes them)\n');
    expect(statusHere).not.toContain('  keys:  ');

    // This clone's pideploy.json names no key for pi2: its next deploy removes it, once pi2 runs its system.
    const run = await pideploy(['deploy', 'pi2', '--json'], project, env);
    expect(run.code, run.stderr).toBe(0);
    expect(deployResultsOf<HostResult>(run.stdout)[0]?.keysRemoved).toEqual([{ path: '/etc/secrets/clone.key', outcome: 'removed' }]);
    expect(await onConsole('pi2', 'ls -A /etc/secrets; cat /nix/var/pideploy/keys')).toBe(`# boot ${bootId}`);
    expect(await statusOf('pi2', project, env)).not.toContain('keys:');
    const again = await pideploy(['deploy', 'pi2', '--json'], project, env);
    expect(deployResultsOf<HostResult>(again.stdout)[0]?.keysRemoved).toBeUndefined();
  });
});
