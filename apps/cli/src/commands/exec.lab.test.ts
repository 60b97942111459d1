import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LAB_SUDO_PASSWORD, labDown, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runBuiltPideploy } from '../testing/built-cli.js';

describeLab('pideploy exec: one command on many hosts (lab)', () => {
  let status: LabStatus;
  let project: string;
  let env: NodeJS.ProcessEnv;
  const exec = (args: readonly string[]) => runBuiltPideploy(['exec', ...args], { cwd: project, env });

  beforeAll(async () => {
    status = await labUp({ hosts: 2 });
    env = { ...process.env, ...status.env };
    project = await mkdtemp(path.join(os.tmpdir(), 'pideploy-exec-'));
    const init = await runBuiltPideploy(['init', project, '--lab', '--force'], { env: process.env });
    expect([init.code, init.stderr]).toEqual([0, expect.not.stringContaining('pideploy:')]);
  });
  afterAll(async () => {
    await labDown();
  });

  it('runs the argv as given on every selected host, one login each, each line after its host\'s name and on its own stream', async () => {
    const logins = status.hosts.map((host) => sshLoginCount(host));
    const run = await exec(['--on', '@pi', '--parallel', '2', '--', 'uname', '-n']);
    expect([run.code, run.stderr]).toEqual([0, '']);
    expect(run.stdout.split('\n').filter(Boolean).sort()).toEqual(['pi1 | pi1', 'pi2 | pi2']);
    expect(status.hosts.map((host, index) => sshLoginCount(host) - (logins[index] ?? 0))).toEqual([1, 1]);
    // Shell characters reach the host as plain arguments (quoted once, by pideploy).
    const literal = await exec(['pi1', '--', 'printf', '%s\\n', 'a b', '$HOME', ';id', "it's"]);
    expect([literal.code, literal.stdout]).toEqual([0, "pi1 | a b\npi1 | $HOME\npi1 | ;id\npi1 | it's\n"]);
    // stdout and stderr apart; a non-zero exit is said at the end and makes the exit 1.
    const failing = await exec(['pi1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(failing.code).toBe(1);
    expect(failing.stdout).toBe('pi1 | out\n');
    expect(failing.stderr).toBe('pi1 | err\npi1: exit 3\n');
  });

  it('pideploy ssh logs in to a host by its name through OpenSSH (its ssh_config, host key checked) and exits with the command\'s code', async () => {
    const pi1 = status.hosts[0];
    if (pi1 === undefined) throw new Error('no lab host');
    const logins = sshLoginCount(pi1);
    const run = await runBuiltPideploy(['ssh', 'pi1', '--', 'sh', '-c', 'uname -n; printf "%s\\n" "$1"; exit 7', 'sh', 'a b;$HOME'], { cwd: project, env });
    expect([run.code, run.stdout, run.stderr]).toEqual([7, 'pi1\na b;$HOME\n', '']);
    expect(sshLoginCount(pi1) - logins).toBe(1);
    // A host key it does not know is refused (the lab's ssh_config with an empty known_hosts), not accepted.
    const sshConfig = readFileSync(status.sshConfig, 'utf8');
    const emptyKnownHosts = path.join(project, 'empty_known_hosts');
    await writeFile(emptyKnownHosts, '');
    const strangerConfig = path.join(project, 'stranger_ssh_config');
    await writeFile(strangerConfig, sshConfig.replace(/^( *UserKnownHostsFile ).*$/mu, `$1${emptyKnownHosts}`));
    const refused = await runBuiltPideploy(['ssh', 'pi1', '--ssh-config', strangerConfig, '--', 'true'], { cwd: project, env });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/Host key verification failed/u);
    expect(readFileSync(emptyKnownHosts, 'utf8')).toBe('');
    // A misspelt host name is not sent to ssh as a host to look up.
    const typo = await runBuiltPideploy(['ssh', 'pi3'], { cwd: project, env });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/^pideploy: .*pi3/u);
  });

  it('--sudo runs it as root with the password asked once per login user; --json gives each line and the exits', async () => {
    const pi1 = status.hosts[0];
    if (pi1 === undefined) throw new Error('no lab host');
    const checks = sudoPasswordChecksFrom(pi1);
    const run = await runBuiltPideploy(['exec', '--on', '@pi', '--sudo', '--json', '--sudo-password-stdin', '--', 'id', '-u'], { cwd: project, env, input: `${LAB_SUDO_PASSWORD}\n` });
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as { event?: { type: string; host: string; stream: string; line: string }; result?: { ok: boolean; results: { host: string; ok: boolean; exitCode: number }[] } });
    expect(lines.filter((line) => line.event?.type === 'remote-output').map((line) => [line.event?.host, line.event?.stream, line.event?.line]).sort()).toEqual([
      ['pi1', 'stdout', '0'],
      ['pi2', 'stdout', '0'],
    ]);
    expect(lines.at(-1)?.result?.results.map((host) => [host.host, host.ok, host.exitCode])).toEqual([
      ['pi1', true, 0],
      ['pi2', true, 0],
    ]);
    // One password check: the command itself proves the password (no separate sudo -v).
    expect(checks()).toEqual([expect.stringMatching(/^deploy sudo -k -S -p {2}-- sh -c .+ pideploy-exec id -u$/u)]);
    // As root, stdout and stderr stay apart; the shell's start line is not shown.
    const mixed = await runBuiltPideploy(['exec', 'pi1', '--sudo', '--sudo-password-stdin', '--', 'sh', '-c', 'echo out; echo err >&2; exit 4'], { cwd: project, env, input: `${LAB_SUDO_PASSWORD}\n` });
    expect([mixed.code, mixed.stdout, mixed.stderr]).toEqual([1, 'pi1 | out\n', 'pi1 | err\npi1: exit 4\n']);
    // A wrong password: the host fails with sudo's refusal, not with sudo's words as the command's output.
    const wrongChecks = sudoPasswordChecksFrom(pi1);
    const wrong = await runBuiltPideploy(['exec', 'pi1', '--sudo', '--sudo-password-stdin', '--', 'id', '-u'], { cwd: project, env, input: 'not-the-password\n' });
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toBe('');
    expect(wrong.stderr).toMatch(/^pi1: did not run: sudo on .+ rejected the password for deploy\n {2}hint: /mu);
    expect(wrong.stderr).not.toMatch(/Sorry|pi1 \|/u);
    // The refused try, and sudo's second try: the hook logs it as it starts, then sudo waits for
    // a password line that never comes (stdin is held open) and is stopped.
    expect(wrongChecks()).toEqual([expect.stringContaining('pideploy-exec id -u'), expect.stringContaining('pideploy-exec id -u')]);
    const refused = await runBuiltPideploy(['exec', 'pi1', '--sudo-password-stdin', '--', 'id'], { cwd: project, env, input: 'x\n' });
    expect([refused.code, refused.stderr]).toEqual([2, 'pideploy: --sudo-password-stdin without --sudo: the command runs as the login user\nhint: add --sudo to run it as root\n']);
  });

  it('--timeout stops a command that runs too long; a host that cannot be reached does not stop the others', async () => {
    const slow = await exec(['pi1', '--timeout', '1', '--', 'sleep', '30']);
    expect(slow.code).toBe(1);
    expect(slow.stderr).toMatch(/^pi1: stopped after 1(\.\d)? s \(--timeout\)\n$/u);
    const configFile = path.join(project, 'pideploy.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { hosts: Record<string, unknown> };
    config.hosts['ghost'] = { target: 'deploy@127.0.0.1:1', configuration: './configuration.nix', tags: ['pi'] };
    await writeFile(configFile, JSON.stringify(config, null, 2));
    const run = await exec(['--on', '@pi', '--', 'true']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/\nghost: did not run: .*127\.0\.0\.1.*\n {2}hint: /u);
    expect(run.stderr).not.toMatch(/^pi[12]:/mu);
  });
});
