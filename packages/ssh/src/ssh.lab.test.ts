import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createBaseContext, createCollectingReporter, PideployError } from '@pideploy/core';
import { LAB_SUDO_PASSWORD, labCutSshSessions, labDown, labStatus, labUp, type LabHostStatus, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount, sudoLogFrom, sudoPasswordChecksFrom } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectSsh, type ConnectSshOptions } from './session.js';
import { sshFingerprint } from './known-hosts.js';
import { createSudo } from './sudo.js';

/** The lab instance: CI uses the default (0); developers run with PIDEPLOY_LAB_INSTANCE=1 so they do not disturb instance 0. */
const instance = Number(process.env['PIDEPLOY_LAB_INSTANCE'] ?? '0');

describeLab('@pideploy/ssh against lab hosts (real sshd, sudo with use_pty)', () => {
  let lab: LabStatus;
  let pi1: LabHostStatus;
  let pi2: LabHostStatus;
  const reporter = createCollectingReporter();
  const context = createBaseContext({ reporter });
  const thrown: unknown[] = [];
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'pideploy-ssh-lab-'));
  let base: ConnectSshOptions;

  /** Runs `body`, keeping whatever it throws for the secret scan at the end. */
  async function capture<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      thrown.push(error);
      throw error;
    }
  }

  const logins = (host: LabHostStatus) => sshLoginCount(host);
  const hostPublicKey = (host: LabHostStatus) => {
    const line = readFileSync(path.join(lab.labDir, 'hosts', host.name, 'etc', 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8');
    return Buffer.from(line.split(' ')[1] as string, 'base64');
  };

  beforeAll(async () => {
    await labUp({ instance, hosts: 2, hostSettings: { pi2: { sudo: 'nopasswd' } } });
    lab = await labStatus({ instance });
    pi1 = lab.hosts.find((host) => host.name === 'pi1') as LabHostStatus;
    pi2 = lab.hosts.find((host) => host.name === 'pi2') as LabHostStatus;
    base = { sshConfigFile: lab.sshConfig, agent: false };
  });

  afterAll(async () => {
    // The test's own lab goes; never instance 0 on a developer machine that did not ask for it.
    if (instance !== 0 || process.env['CI'] !== undefined) await labDown({ instance });
  });

  it('connects through the ssh_config alias as deploy and as root, with one login however many commands run', async () => {
    const before = logins(pi1);
    {
      await using session = await connectSsh('pi1', base, context);
      expect(session.host.hostname).toBe(pi1.address);
      for (let index = 0; index < 5; index += 1) {
        expect((await session.exec(['id', '-un'])).stdout.trim()).toBe('deploy');
      }
      const sudo = await session.sudo({ passwordProvider: async () => LAB_SUDO_PASSWORD });
      for (let index = 0; index < 3; index += 1) expect((await sudo.exec(['id', '-u'])).stdout.trim()).toBe('0');
      const quoted = await session.exec(['printf', '%s|', 'a b', "it's", '$(id)', '']);
      expect(quoted.stdout).toBe("a b|it's|$(id)||");
      expect(session.hostKeyFingerprint).toBe(sshFingerprint(hostPublicKey(pi1)));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(logins(pi1) - before).toBe(1);

    await using root = await connectSsh('root@pi1', base, context);
    expect((await root.exec(['id', '-u'])).stdout.trim()).toBe('0');
    const sudo = await root.sudo({ passwordProvider: async () => expect.fail('root needs no password') });
    expect(sudo.mode).toBe('root');
    expect((await sudo.exec(['id', '-un'])).stdout.trim()).toBe('root');
  });

  it('refuses an unknown host key with its fingerprint, and accepts it only when asked', async () => {
    const knownHosts = path.join(workDir, 'empty_known_hosts');
    writeFileSync(knownHosts, '');
    const error = await capture(() => connectSsh('pi1', { ...base, knownHostsFiles: [knownHosts] }, context)).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PIDEPLOY_SSH_HOST_KEY_UNKNOWN' });
    const fingerprint = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(lab.labDir, 'hosts', 'pi1', 'etc', 'ssh', 'ssh_host_ed25519_key.pub')], {
      encoding: 'utf8',
    }).split(' ')[1] as string;
    expect((error as PideployError).message).toContain(fingerprint);
    expect((error as PideployError).hint).toMatch(/--accept-new-host-key/u);
    expect((error as PideployError).hint).toMatch(/ssh-keyscan/u);
    expect(readFileSync(knownHosts, 'utf8')).toBe('');

    {
      await using session = await connectSsh('pi1', { ...base, knownHostsFiles: [knownHosts], acceptNewHostKey: true }, context);
      expect((await session.exec(['hostname'])).stdout.trim()).toBe('pi1');
    }
    expect(readFileSync(knownHosts, 'utf8')).toContain(hostPublicKey(pi1).toString('base64'));
    // ssh itself now trusts the written file.
    execFileSync('ssh', ['-F', lab.sshConfig, '-o', `UserKnownHostsFile=${knownHosts}`, 'pi1', 'true']);
    await using again = await connectSsh('pi1', { ...base, knownHostsFiles: [knownHosts] }, context);
    expect((await again.exec(['true'])).exitCode).toBe(0);
  });

  it('fails hard on a changed host key, even when accepting new keys', async () => {
    const knownHosts = path.join(workDir, 'changed_known_hosts');
    writeFileSync(knownHosts, `pi1,${pi1.address} ssh-ed25519 ${hostPublicKey(pi2).toString('base64')}\n`);
    for (const acceptNewHostKey of [false, true]) {
      const error = await capture(() => connectSsh('pi1', { ...base, knownHostsFiles: [knownHosts], acceptNewHostKey }, context)).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'PIDEPLOY_SSH_HOST_KEY_CHANGED' });
      expect((error as PideployError).message).toMatch(/CHANGED/u);
    }
    expect(readFileSync(knownHosts, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('classifies a wrong key as an auth failure, and uses an encrypted key and an agent', async () => {
    const wrongKey = path.join(workDir, 'wrong_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    const config = (identity: string | undefined) => {
      const file = path.join(workDir, `config-${identity === undefined ? 'agent' : path.basename(identity)}`);
      writeFileSync(
        file,
        `Host pi1\n  HostName ${pi1.address}\n  User deploy\n${identity === undefined ? '' : `  IdentityFile ${identity}\n  IdentitiesOnly yes\n`}  UserKnownHostsFile ${pi1.knownHosts}\n  GlobalKnownHostsFile /dev/null\n`,
      );
      return file;
    };
    const error = await capture(() => connectSsh('pi1', { sshConfigFile: config(wrongKey), agent: false }, context)).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PIDEPLOY_SSH_AUTH_FAILED' });
    expect((error as PideployError).message).toContain(wrongKey);

    // The lab key, encrypted: the passphrase is asked once.
    const encrypted = path.join(workDir, 'encrypted_key');
    copyFileSync(pi1.identityFile, encrypted);
    execFileSync('ssh-keygen', ['-q', '-p', '-N', 'key-passphrase', '-f', encrypted]);
    const asked: number[] = [];
    {
      await using session = await connectSsh(
        'pi1',
        { sshConfigFile: config(encrypted), agent: false, passphraseProvider: async ({ attempt }) => (asked.push(attempt), 'key-passphrase') },
        context,
      );
      expect((await session.exec(['whoami'])).stdout.trim()).toBe('deploy');
    }
    expect(asked).toEqual([1]);

    // An agent holding the lab key (no IdentityFile at all).
    const socket = path.join(workDir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    try {
      for (let tries = 0; tries < 50 && !readdirSync(workDir).includes('agent.sock'); tries += 1) await new Promise((resolve) => setTimeout(resolve, 50));
      execFileSync('ssh-add', ['-q', pi1.identityFile], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'ignore' });
      await using session = await connectSsh('pi1', { sshConfigFile: config(undefined), agent: socket }, context);
      expect((await session.exec(['whoami'])).stdout.trim()).toBe('deploy');
    } finally {
      agent.kill();
    }
  });

  it('classifies unreachable hosts and timeouts', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    for (const target of [`deploy@127.0.0.1:${closedPort}`, `deploy@${pi1.address}:2222`]) {
      const error = await capture(() => connectSsh(target, base, context)).catch((caught: unknown) => caught);
      expect(error, target).toMatchObject({ code: 'PIDEPLOY_SSH_UNREACHABLE', isRetryable: true });
    }
    const silent = net.createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((resolve) => silent.once('listening', resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const started = Date.now();
      const error = await capture(() => connectSsh(`deploy@127.0.0.1:${port}`, { ...base, connectTimeoutMs: 700 }, context)).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'PIDEPLOY_SSH_TIMEOUT' });
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      silent.close();
    }
  });

  it('asks the sudo password once for many sudo commands; three wrong ones fail clearly', async () => {
    const asked: number[] = [];
    const passwordChecks = sudoPasswordChecksFrom(pi1);
    {
      await using session = await connectSsh('pi1', base, context);
      const sudo = await capture(() => session.sudo({ passwordProvider: async ({ attempt }) => (asked.push(attempt), LAB_SUDO_PASSWORD) }));
      expect(sudo.mode).toBe('password');
      for (let index = 0; index < 4; index += 1) expect((await sudo.exec(['whoami'])).stdout.trim()).toBe('root');
      expect(await session.sudo()).toBe(sudo);
    }
    expect(asked).toEqual([1]);
    // Without a command to prove it, the password is checked by sudo -v; every command checks it again (-k).
    expect(passwordChecks()).toEqual(['deploy sudo -k -S -p  -v', ...Array.from({ length: 4 }, () => 'deploy sudo -k -S -p  -- whoami')]);

    const wrongAsked: number[] = [];
    await using session = await connectSsh('pi1', base, context);
    const error = await capture(() => session.sudo({ passwordProvider: async ({ attempt }) => (wrongAsked.push(attempt), `wrong-${attempt}`) })).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG' });
    expect(wrongAsked).toEqual([1, 2, 3]);
    // A password given up front (file / stdin) is tried once.
    const once = await capture(() => connectSsh('pi1', base, context).then((other) => other.sudo({ password: 'nope' }).finally(() => other.close()))).catch((caught: unknown) => caught);
    expect(once).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG' });
    // A provider that answers once and then has nothing more (a person who gives up):
    // the answer was refused, which is not "no password given".
    const answeredOnce = await capture(() =>
      connectSsh('pi1', base, context).then((other) => other.sudo({ passwordProvider: async ({ attempt }) => (attempt === 1 ? 'nope' : undefined) }).finally(() => other.close())),
    ).catch((caught: unknown) => caught);
    expect(answeredOnce).toMatchObject({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG', message: expect.stringMatching(/rejected the password for deploy$/u) });
  });

  it('proves each password with the caller’s first root command instead of sudo -v, asking again after a refusal', async () => {
    const sudoRan = sudoLogFrom(pi1);
    const passwordChecks = sudoPasswordChecksFrom(pi1);
    const asked: number[] = [];
    const proofs: string[] = [];
    await using session = await connectSsh('pi1', base, context);
    const sudo = await capture(() =>
      session.sudo({
        passwordProvider: async ({ attempt }) => (asked.push(attempt), attempt === 1 ? 'not-the-password' : LAB_SUDO_PASSWORD),
        proveWith: async (runner) => {
          const result = await runner.exec(['sh', '-c', 'echo proven-as-$(id -u)']);
          proofs.push(result.exitCode === 0 ? result.stdout.trim() : `refused: ${result.stderr}`);
          if (result.exitCode !== 0) throw new PideployError({ code: 'PIDEPLOY_SUDO_PASSWORD_WRONG', message: 'refused' });
        },
      }),
    );
    expect(sudo.mode).toBe('password');
    expect(asked).toEqual([1, 2]);
    expect(proofs[0]).toMatch(/^refused: .*(?:incorrect password|Sorry, try again)/u);
    expect(proofs[0]).not.toContain('not-the-password');
    expect(proofs[1]).toBe('proven-as-0');
    // sudo's own log: the probe, the refused try, the proof; no separate validation.
    const logged = sudoRan();
    // Every password check came from the proving command (the refused one checks twice: sudo asks
    // again and finds stdin at its end): no sudo -v.
    const checks = passwordChecks();
    expect(checks.length).toBeGreaterThanOrEqual(2);
    expect(checks.filter((line) => !/^deploy sudo -k -S -p {2}-- sh -c echo proven-as/u.test(line))).toEqual([]);
    expect(logged.filter((line) => /COMMAND=\S*sh -c 'echo proven-as/u.test(line))).toHaveLength(2);
    expect(logged.filter((line) => line.includes('incorrect password attempt'))).toHaveLength(1);
    // Any other failure of the proof ends createSudo with it, without asking again.
    await using other = await connectSsh('pi1', base, context);
    const failure = await createSudo(other, {
      password: LAB_SUDO_PASSWORD,
      proveWith: async () => {
        throw new PideployError({ code: 'PIDEPLOY_REMOTE_NIX_MISSING', message: 'no nix-store' });
      },
    }).catch((caught: unknown) => caught);
    expect(failure).toMatchObject({ code: 'PIDEPLOY_REMOTE_NIX_MISSING' });
    // NOPASSWD hosts run it too, once.
    await using nopasswd = await connectSsh('pi2', base, context);
    let proofsOnPi2 = 0;
    await createSudo(nopasswd, { passwordProvider: async () => expect.fail('NOPASSWD must not ask'), proveWith: async () => void (proofsOnPi2 += 1) });
    expect(proofsOnPi2).toBe(1);
  });

  it('with the mode known from an earlier connection, checks nothing first: the first sudo command proves the password', async () => {
    await using session = await connectSsh('pi1', base, context);
    const right = await createSudo(session, { assumeMode: 'password', password: LAB_SUDO_PASSWORD });
    expect(right.mode).toBe('password');
    expect((await right.exec(['whoami'])).stdout.trim()).toBe('root');
    // No validation ran: a wrong password is accepted here and only the command fails, without echoing it.
    const wrong = await createSudo(session, { assumeMode: 'password', password: 'not-the-password' });
    const refused = await wrong.exec(['whoami']);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).not.toContain('not-the-password');
    await using other = await connectSsh('pi2', base, context);
    expect((await (await createSudo(other, { assumeMode: 'nopasswd' })).exec(['id', '-u'])).stdout.trim()).toBe('0');
  });

  it('detects NOPASSWD without asking', async () => {
    await using session = await connectSsh('pi2', base, context);
    const sudo = await session.sudo({ passwordProvider: async () => expect.fail('NOPASSWD must not ask') });
    expect(sudo.mode).toBe('nopasswd');
    expect((await sudo.exec(['id', '-u'])).stdout.trim()).toBe('0');
    const data = randomBytes(100_000);
    expect((await sudo.exec(['cat'], { stdin: data, encoding: 'buffer' })).stdout.equals(data)).toBe(true);
  });

  it('pipes stdin byte-exact through sudo cat (the password line never reaches the command)', async () => {
    await using session = await connectSsh('pi1', base, context);
    const sudo = await session.sudo({ passwordProvider: async () => LAB_SUDO_PASSWORD });
    const data = randomBytes(4 * 1024 * 1024);
    const fromBuffer = await sudo.exec(['cat'], { stdin: data, encoding: 'buffer' });
    expect(fromBuffer.exitCode).toBe(0);
    expect(fromBuffer.stdout.length).toBe(data.length);
    expect(fromBuffer.stdout.equals(data)).toBe(true);
    const fromStream = await sudo.exec(['sh', '-c', 'cat; echo "uid=$(id -u)" >&2'], { stdin: Readable.from([data.subarray(0, 1000), data.subarray(1000)]), encoding: 'buffer' });
    expect(fromStream.stdout.equals(data)).toBe(true);
    expect(fromStream.stderr.toString()).toBe('uid=0\n');
    const empty = await sudo.exec(['cat']);
    expect(empty.stdout).toBe('');

    // Why `-k`: once a timestamp is valid (here from `sudo -v` in the same shell: Debian keys it on
    // the parent pid and session; `timestamp_type=global` hosts share it across connections),
    // `sudo -S` skips reading the password and the password line becomes the command's input.
    // With `-k`, sudo always reads exactly one password line. (`; true` keeps bash from exec'ing
    // the last sudo, which would give it another parent pid.)
    const input = `${LAB_SUDO_PASSWORD}\n${LAB_SUDO_PASSWORD}\nDATA\n`;
    const hazard = await session.exec({ command: "sudo -S -p '' -v && sudo -S -p '' cat; true" }, { stdin: input });
    expect(hazard.stdout).toBe(`${LAB_SUDO_PASSWORD}\nDATA\n`);
    const withReset = await session.exec({ command: "sudo -S -p '' -v && sudo -k -S -p '' cat; true" }, { stdin: input });
    expect(withReset.stdout).toBe('DATA\n');
    const streamed = await sudo.spawn(['cat']);
    const streamedChunks: Buffer[] = [];
    streamed.stdout.on('data', (chunk: Buffer) => streamedChunks.push(chunk));
    streamed.stdin.end(data.subarray(0, 65536));
    expect((await streamed.exit).exitCode).toBe(0);
    expect(Buffer.concat(streamedChunks).equals(data.subarray(0, 65536))).toBe(true);
    const safe = await sudo.exec(['cat'], { stdin: 'DATA\n' });
    expect(safe.stdout).toBe('DATA\n');
  });

  it('keeps the password out of argv, environment, events and errors', async () => {
    await using session = await connectSsh('pi1', base, context);
    const sudo = await session.sudo({ passwordProvider: async () => LAB_SUDO_PASSWORD });
    const running = sudo.exec(['sleep', '3']);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // The lab host shares this machine's /proc (no pid namespace): every process is visible.
    let scanned = 0;
    for (const pid of readdirSync('/proc').filter((name) => /^[0-9]+$/u.test(name))) {
      for (const file of ['cmdline', 'environ']) {
        let content: string;
        try {
          content = readFileSync(`/proc/${pid}/${file}`, 'latin1');
        } catch {
          continue;
        }
        scanned += 1;
        if (content.includes('sleep\u00003')) expect(content).not.toContain(LAB_SUDO_PASSWORD);
        expect(content.includes(LAB_SUDO_PASSWORD), `/proc/${pid}/${file}`).toBe(false);
      }
    }
    expect(scanned).toBeGreaterThan(10);
    expect((await running).exitCode).toBe(0);
    const failed = await sudo.exec(['sh', '-c', 'exit 3'], { rejectOnFailure: true }).catch((caught: unknown) => caught);
    thrown.push(failed);
    expect(failed).toMatchObject({ code: 'PIDEPLOY_REMOTE_COMMAND_FAILED', commandFailure: { exitCode: 3 } });
    const texts = [
      ...reporter.events.map((event) => JSON.stringify(event)),
      ...thrown.map((error) => (PideployError.isInstance(error) ? `${JSON.stringify(error)} ${error.message} ${error.hint ?? ''} ${String(error.cause)}` : String(error))),
    ];
    expect(texts.length).toBeGreaterThan(5);
    for (const text of texts) expect(text).not.toContain(LAB_SUDO_PASSWORD);
  });

  it('stops a long command on abort, on the remote too', async () => {
    await using session = await connectSsh('pi1', base, context);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 500);
    const error = await session.exec(['sleep', '987'], { signal: controller.signal }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PIDEPLOY_INTERRUPTED' });
    expect(Date.now() - started).toBeLessThan(5000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const left = await session.exec(['sh', '-c', 'pgrep -x sleep -a | grep -c "sleep 987" || true']);
    expect(left.stdout.trim()).toBe('0');
    // The connection is still usable, and the streaming form works.
    const child = await session.spawn(['cat']);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stdin.end('streamed');
    expect(await child.exit).toEqual({ exitCode: 0, signal: null });
    expect(Buffer.concat(chunks).toString()).toBe('streamed');
  });

  it('closes a session whose connection dropped at once (no wait for a close that already happened)', async () => {
    const session = await connectSsh('pi1', base, context);
    expect((await session.exec(['true'])).exitCode).toBe(0);
    let cut = 0;
    for (let attempt = 0; attempt < 50 && cut === 0; attempt += 1) cut = await labCutSshSessions('pi1', { instance });
    expect(cut).toBeGreaterThan(0);
    for (let attempt = 0; attempt < 100 && !session.closed; attempt += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(session.closed).toBe(true);
    const started = performance.now();
    await session.close();
    // (It waited 2 s for a 'close' event that had come already, and forever once nothing else kept node alive.)
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('jumps through one ProxyJump hop', async () => {
    const config = path.join(workDir, 'config-jump');
    writeFileSync(
      config,
      `Include ${lab.sshConfig}\n\nHost behind\n  HostName ${pi1.address}\n  ProxyJump pi1\n  User deploy\n  IdentityFile ${pi1.identityFile}\n  IdentitiesOnly yes\n  UserKnownHostsFile ${pi1.knownHosts}\n`,
    );
    const before = logins(pi1);
    {
      await using session = await connectSsh('behind', { sshConfigFile: config, agent: false }, context);
      expect((await session.exec(['hostname'])).stdout.trim()).toBe('pi1');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(logins(pi1) - before).toBe(2);
  });
});
