import net from 'node:net';
import type { Duplex } from 'node:stream';
import { PideployError } from '@pideploy/core';
import type ssh2 from 'ssh2';
import { SSH_ERROR_CODES } from './errors.js';

/** Options of `SshSession.forwardRemotePort` (what `ssh -R [remoteHost:]remotePort:to.host:to.port` does). */
export interface RemoteForwardOptions {
  /**
   * The local TCP endpoint each forwarded connection is joined to, e.g. a server on this
   * machine's `127.0.0.1`. Connected once per incoming connection.
   */
  readonly to: { readonly host: string; readonly port: number };
  /**
   * Address the remote sshd listens on (default `127.0.0.1`: only processes on that host can
   * connect; sshd keeps remote forwards on loopback anyway unless its `GatewayPorts` allows more).
   */
  readonly remoteHost?: string | undefined;
  /** Port the remote sshd listens on (default 0: a free port it picks, reported as `remotePort`). */
  readonly remotePort?: number | undefined;
}

/** A listening remote forward on one session. Close it (or the session) to stop listening. */
export interface RemotePortForward extends AsyncDisposable {
  /** The address the remote sshd listens on. */
  readonly remoteHost: string;
  /** The port the remote sshd listens on (the picked one when 0 was asked for). */
  readonly remotePort: number;
  /** Connections forwarded so far (including those whose local connect failed). */
  readonly connections: number;
  /** Bytes that came from the remote side and went to the local endpoint. */
  readonly bytesFromRemote: number;
  /** Bytes that the local endpoint sent back to the remote side. */
  readonly bytesToRemote: number;
  /** Stops listening on the remote host and closes the forwarded connections still open; idempotent. */
  close(): Promise<void>;
  /** Same as {@link RemotePortForward.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What ssh2 reports about one incoming forwarded connection. */
interface ForwardedConnection {
  readonly destIP: string;
  readonly destPort: number;
  readonly srcIP: string;
  readonly srcPort: number;
}

type Ssh2Client = InstanceType<typeof ssh2.Client>;
type Accept = () => Duplex;
type Reject = () => void;

/** The error for a forward the server refused (`AllowTcpForwarding no`, port in use …). Pure. */
export function forwardRefusedError(display: string, remoteHost: string, remotePort: number, cause: unknown): PideployError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new PideployError({
    code: SSH_ERROR_CODES.forwardRefused,
    message: `${display} refused to listen on ${remoteHost}:${remotePort} for this connection (remote port forwarding): ${detail}`,
    hint:
      remotePort === 0
        ? 'allow remote forwarding in the host’s sshd_config (AllowTcpForwarding yes or remote; NixOS: services.openssh.settings.AllowTcpForwarding), or use a URL the host reaches directly'
        : `pick another port (or 0 for any free one); if that fails too, allow remote forwarding in the host’s sshd_config (AllowTcpForwarding)`,
    cause,
  });
}

/**
 * The remote forwards of one ssh2 client: one `tcp connection` listener dispatches incoming
 * connections by the port they arrived on, so any number of forwards share the session.
 */
export class RemoteForwards {
  readonly #byPort = new Map<number, (connection: ForwardedConnection, accept: Accept, reject: Reject) => void>();

  constructor(
    private readonly client: Ssh2Client,
    private readonly display: string,
  ) {
    client.on('tcp connection', (connection: ForwardedConnection, accept: Accept, reject: Reject) => {
      const handler = this.#byPort.get(connection.destPort);
      if (handler === undefined) reject();
      else handler(connection, accept, reject);
    });
  }

  /** Asks the server to listen and joins each connection to `options.to`. */
  async open(options: RemoteForwardOptions): Promise<RemotePortForward> {
    const remoteHost = options.remoteHost ?? '127.0.0.1';
    const requestedPort = options.remotePort ?? 0;
    if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
      throw new PideployError({ code: 'PIDEPLOY_USAGE', message: `remote port ${requestedPort} is not a TCP port`, hint: 'use 0 (any free port) or 1…65535' });
    }
    const remotePort = await new Promise<number>((resolve, reject) => {
      try {
        this.client.forwardIn(remoteHost, requestedPort, (error: Error | undefined, port: number) => {
          if (error !== undefined && error !== null) reject(forwardRefusedError(this.display, remoteHost, requestedPort, error));
          else resolve(port);
        });
      } catch (error) {
        reject(
          new PideployError({
            code: SSH_ERROR_CODES.connectionFailed,
            message: `cannot ask ${this.display} for a remote port forward: ${error instanceof Error ? error.message : String(error)}`,
            hint: 'the connection may have dropped; connect again',
            cause: error,
            isRetryable: true,
          }),
        );
      }
    });

    const open = new Set<{ destroy(): void }>();
    let connections = 0;
    let bytesFromRemote = 0;
    let bytesToRemote = 0;
    let closing: Promise<void> | undefined;
    this.#byPort.set(remotePort, (_connection, accept, reject) => {
      connections += 1;
      const local = net.connect({ host: options.to.host, port: options.to.port });
      local.setNoDelay(true);
      const refuse = () => {
        local.destroy();
        reject();
      };
      local.once('error', refuse);
      local.once('connect', () => {
        local.off('error', refuse);
        const channel = accept();
        const pair = {
          destroy() {
            local.destroy();
            channel.destroy();
          },
        };
        open.add(pair);
        channel.on('data', (chunk: Buffer) => {
          bytesFromRemote += chunk.length;
        });
        local.on('data', (chunk: Buffer) => {
          bytesToRemote += chunk.length;
        });
        channel.pipe(local);
        local.pipe(channel);
        const finish = () => {
          open.delete(pair);
          pair.destroy();
        };
        local.on('error', finish);
        local.on('close', finish);
        channel.on('error', finish);
        channel.on('close', finish);
      });
    });

    const close = (): Promise<void> => {
      closing ??= new Promise<void>((resolve) => {
        this.#byPort.delete(remotePort);
        for (const pair of open) pair.destroy();
        open.clear();
        try {
          // The reply may never come when the connection is gone: do not wait for it forever.
          const timer = setTimeout(resolve, 2000);
          timer.unref();
          this.client.unforwardIn(remoteHost, remotePort, () => {
            clearTimeout(timer);
            resolve();
          });
        } catch {
          resolve(); // not connected any more: nothing listens on the remote host
        }
      });
      return closing;
    };

    return {
      remoteHost,
      remotePort,
      get connections() {
        return connections;
      },
      get bytesFromRemote() {
        return bytesFromRemote;
      },
      get bytesToRemote() {
        return bytesToRemote;
      },
      close,
      [Symbol.asyncDispose]: close,
    };
  }
}
