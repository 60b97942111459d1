import net from 'node:net';
import { createBaseContext } from '@pideploy/core';
import { labDown, labUp, type LabStatus } from '@pideploy/lab';
import { describeLab, sshLoginCount } from '@pideploy/lab/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectSsh, type SshSession } from './session.js';

/*
 * Remote port forwarding (`ssh -R`) over the one session, against the lab host's real OpenSSH:
 * processes on the host reach a server on this machine through 127.0.0.1:<picked port> there.
 */

describeLab('remote port forwarding over the one SSH session', () => {
  let lab: LabStatus;
  const servers: net.Server[] = [];

  beforeAll(async () => {
    lab = await labUp({ hosts: 1 });
  });
  afterAll(async () => {
    for (const server of servers) server.close();
    await labDown();
  });

  const logins = () => sshLoginCount(lab.hosts[0]!);
  const connect = () => connectSsh('deploy@pi1', { sshConfigFile: lab.sshConfig, agent: false }, createBaseContext());

  /** A local server that answers each line with `${tag}:${LINE}`, on 127.0.0.1:<free port>. */
  async function localServer(tag: string): Promise<number> {
    const server = net.createServer((socket) => {
      let buffered = '';
      socket.on('data', (chunk) => {
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) socket.write(`${tag}:${line.toUpperCase()}\n`);
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as net.AddressInfo).port;
  }

  /** On the lab host: connect to 127.0.0.1:port, send one line, print the answer line (bash /dev/tcp). */
  function askOnHost(session: SshSession, port: number, line: string) {
    const script = 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7; printf "%s\\n" "$2" >&3; IFS= read -r answer <&3; printf "%s" "$answer"';
    return session.exec(['bash', '-c', script, 'ask', String(port), line]);
  }

  it('the host reaches a local server through 127.0.0.1:<picked port>, on the same login', async () => {
    const before = logins();
    const port = await localServer('one');
    await using session = await connect();
    await using forward = await session.forwardRemotePort({ to: { host: '127.0.0.1', port } });
    expect(forward.remoteHost).toBe('127.0.0.1');
    expect(forward.remotePort).toBeGreaterThan(1023);
    const answer = await askOnHost(session, forward.remotePort, 'hello');
    expect(answer.stderr).toBe('');
    expect(answer.stdout).toBe('one:HELLO');
    expect(forward.connections).toBe(1);
    expect(forward.bytesFromRemote).toBe('hello\n'.length);
    expect(forward.bytesToRemote).toBe('one:HELLO\n'.length);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(logins() - before).toBe(1);
  });

  it('two forwards on one session reach their own servers; a closed one no longer listens', async () => {
    const [portA, portB] = [await localServer('a'), await localServer('b')];
    await using session = await connect();
    const forwardA = await session.forwardRemotePort({ to: { host: '127.0.0.1', port: portA } });
    const forwardB = await session.forwardRemotePort({ to: { host: '127.0.0.1', port: portB } });
    expect(forwardA.remotePort).not.toBe(forwardB.remotePort);
    expect((await askOnHost(session, forwardA.remotePort, 'x')).stdout).toBe('a:X');
    expect((await askOnHost(session, forwardB.remotePort, 'y')).stdout).toBe('b:Y');
    await forwardA.close();
    await forwardA.close(); // idempotent
    const refused = await askOnHost(session, forwardA.remotePort, 'z');
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/Connection refused/u);
    expect((await askOnHost(session, forwardB.remotePort, 'still')).stdout).toBe('b:STILL');
    await forwardB.close();
  });

  it('a local endpoint that is down closes the forwarded connection instead of hanging', async () => {
    const port = await localServer('gone');
    const server = servers.at(-1) as net.Server;
    await new Promise((resolve) => server.close(resolve));
    await using session = await connect();
    await using forward = await session.forwardRemotePort({ to: { host: '127.0.0.1', port } });
    const answer = await askOnHost(session, forward.remotePort, 'anyone?');
    expect(answer.stdout).toBe('');
    expect(forward.connections).toBe(1);
  });

  it('a port the server will not bind is refused with PIDEPLOY_SSH_FORWARD_REFUSED and a hint', async () => {
    await using session = await connect();
    // deploy is not root: sshd may not bind a privileged port for it.
    await expect(session.forwardRemotePort({ to: { host: '127.0.0.1', port: 9 }, remotePort: 80 })).rejects.toMatchObject({
      code: 'PIDEPLOY_SSH_FORWARD_REFUSED',
      hint: expect.stringContaining('port'),
    });
    // The session still works.
    expect((await session.exec(['echo', 'ok'])).stdout).toBe('ok\n');
  });
});
