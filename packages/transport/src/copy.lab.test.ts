import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createBaseContext, createCollectingReporter, PideployError, type DeployEvent } from '@pideploy/core';
import { LAB_SUDO_EXITED_ARGV, LAB_SUDO_PASSWORD, labCutSshSessions, labDown, labExec, labShapeLink, labStatus, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount, sudoCommandsOf, sudoLogFrom, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { formatHash, parseHash, queryClosurePathInfos } from '@pideploy/nix';
import { connectSsh, createSudo, type CreateSudoOptions, type SshSession } from '@pideploy/ssh';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { copyClosure, openServeConnection, type CopyClosureInput, type ServeConnection } from './copy-closure.js';
import type { StoreAccess } from './remote-serve.js';

/*
 * The proof of issue 5's transport part on lab hosts (real nix-daemon, sshd, sudo):
 * pi1 = deploy is a trusted Nix user; pi2 = deploy is NOT trusted (sudo with a password);
 * pi3 = a 48 MiB store (out of space). Instance from PIDEPLOY_LAB_INSTANCE (CI: 0).
 */

const run = promisify(execFile);
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

describeLab('@pideploy/transport: copy closures to lab hosts over one SSH connection', () => {
  let lab: LabStatus;
  let pi1: LabHostStatus;
  let pi2: LabHostStatus;
  let pi3: LabHostStatus;
  let nixEnv: NodeJS.ProcessEnv;
  let small: string; // 1 top + 30 leaves
  let big: string; // 1 path of 64 MiB random bytes + a small dependency
  let smallClosure: string[];
  let bigClosure: string[];

  const logins = (host: LabHostStatus) => sshLoginCount(host);
  const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

  async function nixBuild(expression: string): Promise<string> {
    const { stdout } = await run('nix-build', ['--no-out-link', '-E', expression], { env: nixEnv, maxBuffer: 1 << 24 });
    return stdout.trim();
  }
  async function closureOf(path: string): Promise<string[]> {
    return (await queryClosurePathInfos([path], { env: nixEnv })).map((info) => info.path);
  }
  async function forget(host: LabHostStatus, paths: readonly string[]): Promise<void> {
    const result = await labExec(host.name, ['nix-store', '--delete', ...paths], { instance });
    expect(result.exitCode, result.stderr).toBe(0);
  }
  async function validOn(host: LabHostStatus, paths: readonly string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (const path of paths) out.push((await labExec(host.name, ['nix-store', '--check-validity', path], { instance })).exitCode === 0);
    return out;
  }
  async function connect(target: string): Promise<SshSession> {
    return connectSsh(target, { sshConfigFile: lab.sshConfig, agent: false }, createBaseContext());
  }
  /** One copy over a new login; `sudo` makes the sudo runner on that session (without it: direct). */
  async function copyOnce(host: LabHostStatus, target: string, input: Omit<CopyClosureInput, 'session' | 'host' | 'access'> & { sudo?: CreateSudoOptions }) {
    const before = logins(host);
    const reporter = createCollectingReporter();
    try {
      await using session = await connect(target);
      const { sudo, ...copyInput } = input;
      const access: StoreAccess = sudo === undefined ? { mode: 'direct' } : { mode: 'sudo', runner: await createSudo(session, sudo) };
      const result = await copyClosure({ host: host.name, session, localNixEnv: nixEnv, ...copyInput, access }, createBaseContext({ reporter }));
      return { result, events: reporter.events, logins: async () => (await settle(), logins(host) - before) };
    } catch (error) {
      (error as { events?: DeployEvent[] }).events = reporter.events;
      throw error;
    }
  }

  beforeAll(async () => {
    await labUp({ instance, hosts: 3, hostSettings: { pi2: { trusted: false }, pi3: { storeSizeMiB: 48 } } });
    lab = await labStatus({ instance });
    [pi1, pi2, pi3] = ['pi1', 'pi2', 'pi3'].map((name) => lab.hosts.find((host) => host.name === name) as LabHostStatus) as [LabHostStatus, LabHostStatus, LabHostStatus];
    nixEnv = { ...process.env, ...lab.env };
    const salt = `${Date.now()}`;
    small = await nixBuild(`let leaf = i: builtins.derivation { name = "transport-lab-leaf-\${toString i}"; system = "x86_64-linux"; builder = "/bin/sh"; salt = "${salt}"; args = ["-c" "echo leaf \${toString i} > $out"]; };
      in builtins.derivation { name = "transport-lab-small"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; leaves = map leaf (builtins.genList (i: i) 30);
           args = ["-c" "echo $leaves > $out"]; }`);
    big = await nixBuild(`let dep = builtins.derivation { name = "transport-lab-big-dep"; system = "x86_64-linux"; builder = "/bin/sh"; salt = "${salt}"; args = ["-c" "echo dep > $out"]; };
      in builtins.derivation { name = "transport-lab-big"; system = "x86_64-linux"; builder = "/bin/sh"; PATH = "/usr/bin:/bin"; inherit dep;
           args = ["-c" "mkdir $out; echo $dep > $out/dep; head -c 67108864 /dev/urandom > $out/blob"]; }`);
    smallClosure = await closureOf(small);
    bigClosure = await closureOf(big);
  });

  afterAll(async () => {
    if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
  });

  it('trusted deploy user: copies directly with 1 login; a re-run sends no NAR bytes', async () => {
    await forget(pi1, smallClosure);
    const first = await copyOnce(pi1, 'pi1', { paths: [small] });
    expect(first.result.pathsSent).toHaveLength(31);
    expect(first.result.pathsSent.at(-1)).toBe(small);
    expect(first.events.find((event) => event.type === 'copy-plan')).toMatchObject({ pathsToSend: 31, pathsPresent: 0 });
    expect(await first.logins()).toBe(1);
    expect(await validOn(pi1, smallClosure)).toEqual(smallClosure.map(() => true));
    const verify = await labExec('pi1', ['nix-store', '--verify-path', ...smallClosure], { instance });
    expect(verify.exitCode, verify.stderr).toBe(0);

    const again = await copyOnce(pi1, 'pi1', { paths: [small] });
    expect(again.result).toMatchObject({ pathsSent: [], bytesSent: 0 });
    expect(again.result.pathsPresent).toHaveLength(31);
    expect(again.events.filter((event) => event.type === 'copy-progress')).toEqual([]);
    expect(await again.logins()).toBe(1);
  });

  it('untrusted deploy user: nix-copy-closure fails ("lacks a valid signature"), pideploy through sudo succeeds with 1 login', async () => {
    await forget(pi2, smallClosure);
    const peer = await run('nix-copy-closure', ['--to', 'deploy@pi2', small], { env: { ...nixEnv, NIX_SSHOPTS: `-F ${lab.sshConfig}` } }).then(
      () => '',
      (error: { stderr?: string }) => error.stderr ?? 'failed',
    );
    expect(peer).toMatch(/lacks a valid signature/u);

    // Without sudo, pideploy fails the same way, with a hint, and registers nothing half-sent.
    await expect(copyOnce(pi2, 'pi2', { paths: [small] })).rejects.toMatchObject({
      code: 'PIDEPLOY_COPY_UNTRUSTED_USER',
      hint: expect.stringContaining('sudo password'),
    });

    const viaSudo = await copyOnce(pi2, 'pi2', { paths: [small], sudo: { assumeMode: 'password', password: LAB_SUDO_PASSWORD } });
    expect(viaSudo.result.pathsSent.length + viaSudo.result.pathsPresent.length).toBe(31);
    expect(await viaSudo.logins()).toBe(1);
    expect(await validOn(pi2, smallClosure)).toEqual(smallClosure.map(() => true));
    const again = await copyOnce(pi2, 'pi2', { paths: [small], sudo: { assumeMode: 'password', password: LAB_SUDO_PASSWORD } });
    expect(again.result.bytesSent).toBe(0);
  });

  it('a wrong sudo password fails before anything is sent', async () => {
    await forget(pi2, smallClosure);
    const failure = await copyOnce(pi2, 'pi2', { paths: [small], sudo: { assumeMode: 'password', password: 'not-the-password' } }).catch((error: unknown) => error);
    expect(PideployError.isInstance(failure)).toBe(true);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG', message: expect.stringContaining('nothing was copied') });
    expect(JSON.stringify(failure)).not.toContain('not-the-password');
    expect(((failure as { events: DeployEvent[] }).events ?? []).filter((event) => event.type === 'copy-progress')).toEqual([]);
    expect(await validOn(pi2, smallClosure)).toEqual(smallClosure.map(() => false));
  });

  it('a serve connection opened ahead proves the sudo password (no sudo -v), waits, and carries the copy later', async () => {
    await forget(pi2, smallClosure);
    const sudoRan = sudoLogFrom(pi2);
    const passwordChecks = sudoPasswordChecksFrom(pi2);
    const before = logins(pi2);
    const reporter = createCollectingReporter();
    const context = createBaseContext({ reporter });
    const asked: number[] = [];
    let connection: ServeConnection | undefined;
    await using session = await connect('pi2');
    const sudo = await createSudo(session, {
      passwordProvider: async ({ attempt }) => (asked.push(attempt), attempt === 1 ? 'not-the-password' : LAB_SUDO_PASSWORD),
      proveWith: async (runner) => {
        connection = await openServeConnection({ host: 'pi2', session, access: { mode: 'sudo', runner } }, context);
      },
    });
    expect(sudo.mode).toBe('password');
    expect(asked).toEqual([1, 2]);
    expect(connection?.serverVersion).toBe(0x207);
    // Idle, as while the system builds here; nothing was sent yet.
    await settle();
    expect(await validOn(pi2, smallClosure)).toEqual(smallClosure.map(() => false));
    const result = await copyClosure({ host: 'pi2', session, paths: [small], connection, localNixEnv: nixEnv }, context);
    expect(result.pathsSent).toHaveLength(31);
    expect(await validOn(pi2, smallClosure)).toEqual(smallClosure.map(() => true));
    await settle();
    expect(logins(pi2) - before).toBe(1);
    // sudo's log: the serve command that carried the copy and nothing else run as root (the
    // refused try is not logged, as the channel was closed at sudo's "try again"); every password
    // check came from a serve command (no sudo -v).
    const logged = sudoRan();
    expect(sudoCommandsOf(logged)).toEqual(['/usr/bin/nix-store --serve --write']);
    const checks = passwordChecks();
    expect(checks.length).toBeGreaterThanOrEqual(2);
    // (The refused try's sudo may be gone, its channel closed, before the hook reads its command line.)
    expect(checks.filter((line) => line !== 'deploy sudo -k -S -p  -- nix-store --serve --write' && line !== `deploy ${LAB_SUDO_EXITED_ARGV}`)).toEqual([]);
    // A wrong password given up front: the connection fails to open with the sudo error, nothing runs.
    await using other = await connect('pi2');
    const wrong = await createSudo(other, { assumeMode: 'password', password: 'not-the-password' });
    const failure = await openServeConnection({ host: 'pi2', session: other, access: { mode: 'sudo', runner: wrong } }, context).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG' });
    expect(JSON.stringify(failure)).not.toContain('not-the-password');
  });

  it('a serve connection reads a closure with its registrations as the target’s nix path-info does, then still copies', async () => {
    await copyOnce(pi1, 'pi1', { paths: [small] });
    await using session = await connect('pi1');
    const connection = await openServeConnection({ host: 'pi1', session }, createBaseContext());
    // A leaf (not the top: the closure is in store-path order, so the top may come anywhere in it).
    const leaf = smallClosure.find((path) => path !== small) as string;
    const [closure, again] = await Promise.all([connection.queryClosure([small]), connection.queryClosure([leaf])]);
    const local = await queryClosurePathInfos([small], { env: nixEnv });
    // What the target's own nix says about the same paths (nix path-info there, through the console).
    const onTarget = JSON.parse((await labExec('pi1', ['nix', 'path-info', '--json', '--recursive', small], { instance })).stdout) as { path: string; narSize: number; narHash: string; references: string[] }[];
    expect(closure.map((info) => info.path).sort()).toEqual([...smallClosure].sort());
    for (const info of closure) {
      const there = onTarget.find((entry) => entry.path === info.path);
      expect(info.narSize).toBe(there?.narSize);
      expect(formatHash(parseHash(info.narHash).digest, 'hex')).toBe(formatHash(parseHash(there?.narHash ?? '').digest, 'hex'));
      expect([...info.references].sort()).toEqual([...(there?.references ?? [])].sort());
      expect(info.narSize).toBe(local.find((entry) => entry.path === info.path)?.narSize);
    }
    expect(again.map((info) => info.path)).toEqual([leaf]);
    const copied = await copyClosure({ host: 'pi1', session, paths: [small], connection, localNixEnv: nixEnv }, createBaseContext());
    expect(copied).toMatchObject({ pathsSent: [], bytesSent: 0 });
    expect(copied.pathsPresent).toHaveLength(31);
  });

  it('a serve process that never answers fails after the hello timeout with a hint, through sudo too', async () => {
    // A stand-in for sudo asking something pideploy cannot answer: a "nix-store" that stays silent.
    const stub = await labExec('pi2', ['sh', '-c', 'printf "#!/bin/sh\\nexec sleep 60\\n" > /tmp/silent-serve && chmod 755 /tmp/silent-serve'], { instance });
    expect(stub.exitCode, stub.stderr).toBe(0);
    await using session = await connect('pi2');
    const started = performance.now();
    const direct = await openServeConnection({ host: 'pi2', session, remoteProgram: '/tmp/silent-serve', helloTimeoutMs: 1000 }, createBaseContext()).catch((error: unknown) => error);
    expect(direct).toMatchObject({ code: 'PIDEPLOY_COPY_FAILED', message: expect.stringContaining('did not answer within 1 s'), hint: expect.stringContaining('nix-store --version') });
    expect(performance.now() - started).toBeLessThan(5000);
    const runner = await createSudo(session, { assumeMode: 'password', password: LAB_SUDO_PASSWORD });
    const viaSudo = await openServeConnection({ host: 'pi2', session, access: { mode: 'sudo', runner }, remoteProgram: '/tmp/silent-serve', helloTimeoutMs: 1000 }, createBaseContext()).catch((error: unknown) => error);
    expect(viaSudo).toMatchObject({ code: 'PIDEPLOY_SUDO_NOT_ALLOWED', message: expect.stringContaining('(started through sudo)'), hint: expect.stringContaining('one-time code') });
  });

  it('root login: copies directly', async () => {
    await forget(pi2, smallClosure);
    const asRoot = await copyOnce(pi2, 'root@pi2', { paths: [small] });
    expect(asRoot.result.pathsSent).toHaveLength(31);
    expect(await asRoot.logins()).toBe(1);
    expect(await validOn(pi2, [small])).toEqual([true]);
  });

  it('an SSH connection cut mid-transfer leaves the target consistent; the re-run sends only what is missing', async () => {
    await forget(pi1, bigClosure);
    const before = logins(pi1);
    let cut = false;
    const reporter = {
      emit(event: DeployEvent) {
        if (!cut && event.type === 'copy-progress' && event.bytesSent > 16 * 1024 * 1024) {
          cut = true;
          void labCutSshSessions('pi1', { instance });
        }
      },
    };
    // A 150 Mbit/s link: the 64 MiB path takes ~3.6 s, so the cut (at 16 MiB, progress is
    // reported every 250 ms) lands mid-path on any machine; unshaped, it could all be sent first.
    await labShapeLink('pi1', { rateMbit: 150 }, { instance });
    let failure: unknown;
    try {
      await using session = await connect('pi1');
      failure = await copyClosure({ host: 'pi1', session, paths: [big], localNixEnv: nixEnv }, createBaseContext({ reporter })).catch((error: unknown) => error);
    } finally {
      await labShapeLink('pi1', { rateMbit: undefined }, { instance });
    }
    expect(cut).toBe(true);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_COPY_CONNECTION_LOST', isRetryable: true, hint: expect.stringContaining('sends only what is still missing') });
    expect((failure as Error).message).toContain(big);
    const dep = bigClosure.find((path) => path !== big) as string;
    expect(await validOn(pi1, [dep, big])).toEqual([true, false]);
    const verify = await labExec('pi1', ['nix-store', '--verify'], { instance });
    expect(verify.exitCode, verify.stderr).toBe(0);
    expect(verify.stderr).not.toMatch(/invalid|corrupt|error/iu);

    const rerun = await copyOnce(pi1, 'pi1', { paths: [big] });
    expect(rerun.result.pathsSent).toEqual([big]);
    expect(rerun.result.pathsPresent).toEqual([dep]);
    expect(await validOn(pi1, [dep, big])).toEqual([true, true]);
    expect(logins(pi1) - before).toBe(2);
  });

  it('a full target store fails with one line + hint and registers nothing half-copied', async () => {
    await forget(pi3, bigClosure);
    const failure = await copyOnce(pi3, 'pi3', { paths: [big] }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_TARGET_STORE_FULL', hint: expect.stringContaining('nix-collect-garbage') });
    expect((failure as Error).message).not.toContain('\n');
    expect(await validOn(pi3, [big])).toEqual([false]);
    const verify = await labExec('pi3', ['nix-store', '--verify'], { instance });
    expect(verify.exitCode, verify.stderr).toBe(0);
  });
});
