import { existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { PideployError, shellJoin, type PideployContext } from '@pideploy/core';
import ssh2, { type AnyAuthMethod, type ClientChannel, type ConnectConfig, type ParsedKey } from 'ssh2';
import { coalesceWritesPerTick } from './coalesce-writes.js';
import { SSH_ERROR_CODES, classifySshError, interruptedError, type ConnectionDescription } from './errors.js';
import {
  checkHostKey,
  formatKnownHostsLine,
  knownHostsName,
  knownKeyTypesForHost,
  parseKnownHosts,
  sshFingerprint,
  sshKeyType,
  type KnownHostsEntry,
} from './known-hosts.js';
import { collectRemoteProcess, remoteCommandLine, remoteProcessFromChannel, type ExecOptions, type ExecResult, type RemoteCommand, type RemoteProcess } from './remote-process.js';
import { RemoteForwards, type RemoteForwardOptions, type RemotePortForward } from './remote-forward.js';
import { currentLocalIdentity, loadSshConfig } from './ssh-config-files.js';
import { createSudo, type CreateSudoOptions, type SudoRunner } from './sudo.js';
import { parseSshTarget, resolveSshHost, type LocalIdentity, type ResolvedSshHost, type SshConfig, type SshTarget } from './ssh-config.js';

const { Client, OpenSSHAgent, utils } = ssh2;

/** What a passphrase provider is asked. */
export interface PassphraseRequest {
  /** The encrypted private key file. */
  readonly identityFile: string;
  /** 1 for the first prompt, 2 and 3 after a wrong passphrase. */
  readonly attempt: number;
}

/** Asks for a key passphrase (no echo). Return undefined to skip the key. The answer is never logged. */
export type PassphraseProvider = (request: PassphraseRequest) => Promise<string | undefined>;

/** Options of {@link connectSsh}. */
export interface ConnectSshOptions {
  /** ssh_config file to use instead of `~/.ssh/config` + `/etc/ssh/ssh_config` (like `ssh -F`). */
  readonly sshConfigFile?: string | undefined;
  /** known_hosts files to use instead of `UserKnownHostsFile` (new keys go to the first one). */
  readonly knownHostsFiles?: readonly string[] | undefined;
  /** Private key file(s) tried before those of ssh_config (like `ssh -i`). */
  readonly identityFile?: string | readonly string[] | undefined;
  /** Agent socket; default `IdentityAgent` or `$SSH_AUTH_SOCK`; false to use no agent. */
  readonly agent?: string | false | undefined;
  /** Asked once per encrypted key that is tried (up to 3 times if the passphrase is wrong). */
  readonly passphraseProvider?: PassphraseProvider | undefined;
  /** Write an unknown host's key to known_hosts and connect (`--accept-new-host-key`). A changed key is still refused. */
  readonly acceptNewHostKey?: boolean | undefined;
  /** Compress the connection (zlib@openssh.com), for slow links; default off (fast links lose time to it). */
  readonly compress?: boolean | undefined;
  /** Limit for TCP connect + SSH handshake + login, not counting passphrase prompts (default `ConnectTimeout`, else 30 s). */
  readonly connectTimeoutMs?: number | undefined;
  /** Keepalive interval (default `ServerAliveInterval`, else 15 s; 0 disables); `ServerAliveCountMax` misses drop the connection. */
  readonly keepaliveIntervalMs?: number | undefined;
  /** Aborts connecting (defaults to the context's signal). */
  readonly signal?: AbortSignal | undefined;
  /** Local user and home directory (default: this process's); for tests. */
  readonly local?: LocalIdentity | undefined;
}

/** An open SSH connection: one login, any number of commands. Close it with `await using` or `close()`. */
export interface SshSession extends AsyncDisposable {
  /** The resolved settings the connection was made with. */
  readonly host: ResolvedSshHost;
  /** `user@host:port` as connected (for messages). */
  readonly display: string;
  /** The host key that was verified, as an OpenSSH fingerprint. */
  readonly hostKeyFingerprint: string;
  /** Runs one command on its own channel of this connection and collects its output. */
  exec(command: RemoteCommand, options: ExecOptions & { readonly encoding: 'buffer' }): Promise<ExecResult<Buffer>>;
  exec(command: RemoteCommand, options?: ExecOptions): Promise<ExecResult<string>>;
  /** Starts one command and hands back its streams (for protocols over stdin/stdout). */
  spawn(command: RemoteCommand, options?: { readonly signal?: AbortSignal | undefined }): Promise<RemoteProcess>;
  /**
   * How this session runs commands as root (see {@link createSudo}): detected, and the password
   * asked for and checked, on the first call; later calls return the same runner.
   */
  sudo(options?: CreateSudoOptions): Promise<SudoRunner>;
  /**
   * Makes the remote sshd listen on a port of the host (default `127.0.0.1`, a free port) and
   * joins every connection made to it to a local TCP endpoint, over this same connection (what
   * `ssh -R` does; no new login). Lets the host reach a server on this machine that it could not
   * reach otherwise. Stops when closed, or with the session.
   * @throws PideployError `PIDEPLOY_SSH_FORWARD_REFUSED` when the server does not allow it.
   */
  forwardRemotePort(options: RemoteForwardOptions): Promise<RemotePortForward>;
  /** True once the connection closed (by `close()` or because it dropped). */
  readonly closed: boolean;
  /** Closes the connection (and a ProxyJump hop); idempotent. */
  close(): Promise<void>;
  /** Same as {@link SshSession.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Internal: exec with a secret first stdin line (the sudo password); not part of the public API. */
export const EXEC_WITH_SECRET = Symbol('pideploy.ssh.execWithSecret');

/** Internal: spawn with a secret first stdin line; not part of the public API. */
export const SPAWN_WITH_SECRET = Symbol('pideploy.ssh.spawnWithSecret');

/** Internal view of a session that sudo uses. */
export interface SessionWithSecretExec extends SshSession {
  [SPAWN_WITH_SECRET](command: RemoteCommand, secretLine: Buffer | undefined, options: { readonly signal?: AbortSignal | undefined }): Promise<RemoteProcess>;
  [EXEC_WITH_SECRET](
    command: RemoteCommand,
    secretLine: Buffer | undefined,
    options: ExecOptions & { readonly redact?: (text: string) => string },
  ): Promise<ExecResult<string | Buffer>>;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_KEEPALIVE_MS = 15_000;
const ALL_HOST_KEY_ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
] as const;

/** Ciphers in order of preference: hardware-accelerated AES first, every one OpenSSH 6.2+ offers. */
export const PREFERRED_CIPHERS = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'aes128-ctr',
  'aes192-ctr',
  'aes256-ctr',
  'chacha20-poly1305@openssh.com',
] as const;

/** Host key algorithms in OpenSSH's spirit: the types known_hosts has for the host come first. */
export function orderHostKeyAlgorithms(knownTypes: readonly string[]): string[] {
  const preferred = ALL_HOST_KEY_ALGORITHMS.filter((algorithm) => {
    const keyType = algorithm.startsWith('rsa-sha2-') ? 'ssh-rsa' : algorithm;
    return knownTypes.includes(keyType);
  });
  return [...preferred, ...ALL_HOST_KEY_ALGORITHMS.filter((algorithm) => !preferred.includes(algorithm))];
}

function readKnownHostsFiles(files: readonly string[]): KnownHostsEntry[] {
  return files.flatMap((file) => {
    try {
      return parseKnownHosts(readFileSync(file, 'utf8'), file);
    } catch {
      return [];
    }
  });
}

/** A timer that can be paused (while a human types a passphrase). */
function pausableTimer(ms: number, onExpire: () => void): { pause(): void; resume(): void; clear(): void } {
  let remaining = ms;
  let startedAt = Date.now();
  let handle: NodeJS.Timeout | undefined = setTimeout(onExpire, remaining);
  return {
    pause() {
      if (handle === undefined) return;
      clearTimeout(handle);
      handle = undefined;
      remaining -= Date.now() - startedAt;
    },
    resume() {
      if (handle !== undefined) return;
      startedAt = Date.now();
      handle = setTimeout(onExpire, Math.max(0, remaining));
    },
    clear() {
      if (handle !== undefined) clearTimeout(handle);
      handle = undefined;
      remaining = Number.POSITIVE_INFINITY;
    },
  };
}

/** Agent that only offers the keys whose public halves are given (`IdentitiesOnly yes`). */
class FilteredAgent extends OpenSSHAgent {
  constructor(
    socketPath: string,
    private readonly allowed: readonly Buffer[],
  ) {
    super(socketPath);
  }

  override getIdentities(callback: (error: Error | undefined, keys?: ParsedKey[]) => void): void {
    super.getIdentities((error, keys) => {
      if (error !== undefined && error !== null) return callback(error);
      const parsedKeys = (keys ?? []).filter((key): key is ParsedKey => 'getPublicSSH' in key);
      callback(undefined, parsedKeys.filter((key) => this.allowed.some((blob) => blob.equals(key.getPublicSSH()))));
    });
  }
}

/** The public blob of an identity file: from `<file>.pub`, or from the private key when unencrypted. */
function identityPublicBlob(file: string): Buffer | undefined {
  for (const candidate of [`${file}.pub`, file]) {
    try {
      const parsed = utils.parseKey(readFileSync(candidate));
      if (!(parsed instanceof Error)) return (Array.isArray(parsed) ? parsed[0] : parsed)?.getPublicSSH();
    } catch {
      // unreadable: try the next
    }
  }
  return undefined;
}

interface OpenedClient {
  readonly client: InstanceType<typeof Client>;
  readonly fingerprint: string;
}

interface OpenClientInput {
  readonly host: ResolvedSshHost;
  readonly options: ConnectSshOptions;
  readonly context: PideployContext;
  readonly signal: AbortSignal;
  /** An already-open stream to the host (ProxyJump); otherwise a TCP connection is made. */
  readonly stream?: Duplex | undefined;
}

/** Opens one authenticated ssh2 client to a resolved host. */
async function openClient(input: OpenClientInput): Promise<OpenedClient> {
  const { host, options, context, signal } = input;
  const display = `${host.user}@${host.hostname}${host.port === 22 ? '' : `:${host.port}`}`;
  const offered: string[] = [];
  const where: ConnectionDescription = { display, user: host.user, hostname: host.hostname, port: host.port, offered };
  const knownHostsFiles = [...(options.knownHostsFiles ?? host.userKnownHostsFiles)];
  const allKnownHostsFiles = [...knownHostsFiles, ...(options.knownHostsFiles === undefined ? host.globalKnownHostsFiles : [])];
  const lookupNames = [host.hostKeyAlias ?? knownHostsName(host.hostname, host.port)];
  const knownEntries = readKnownHostsFiles(allKnownHostsFiles);
  const timeoutMs = options.connectTimeoutMs ?? host.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const keepaliveMs = options.keepaliveIntervalMs ?? (host.serverAliveIntervalMs > 0 ? host.serverAliveIntervalMs : DEFAULT_KEEPALIVE_MS);

  // Authentication methods in OpenSSH's order: agent keys, then identity files.
  const extraIdentities = options.identityFile === undefined ? [] : typeof options.identityFile === 'string' ? [options.identityFile] : [...options.identityFile];
  const identityFiles = [...new Set([...extraIdentities, ...host.identityFiles])].filter((file) => existsSync(file));
  const agentSocket = options.agent === false || host.identityAgent === 'none' ? undefined : (options.agent ?? host.identityAgent ?? process.env['SSH_AUTH_SOCK']);
  const methods: (() => Promise<AnyAuthMethod | undefined>)[] = [];
  if (agentSocket !== undefined && agentSocket !== '' && existsSync(agentSocket)) {
    methods.push(async () => {
      offered.push('agent keys');
      if (!host.identitiesOnly) return { type: 'agent', username: host.user, agent: agentSocket };
      const allowed = identityFiles.map(identityPublicBlob).filter((blob): blob is Buffer => blob !== undefined);
      return allowed.length === 0 ? undefined : { type: 'agent', username: host.user, agent: new FilteredAgent(agentSocket, allowed) };
    });
  }
  let timer: ReturnType<typeof pausableTimer> | undefined;
  for (const file of identityFiles) {
    methods.push(async () => {
      const data = readFileSync(file);
      let parsed = utils.parseKey(data);
      let passphrase: string | undefined;
      if (parsed instanceof Error && /encrypted|passphrase/iu.test(parsed.message)) {
        if (options.passphraseProvider === undefined) {
          offered.push(`${file} (encrypted, no passphrase provider)`);
          return undefined;
        }
        for (let attempt = 1; attempt <= 3; attempt += 1) {
          timer?.pause();
          try {
            passphrase = await options.passphraseProvider({ identityFile: file, attempt });
          } finally {
            timer?.resume();
          }
          if (passphrase === undefined) break;
          parsed = utils.parseKey(data, passphrase);
          if (!(parsed instanceof Error)) break;
        }
      }
      if (parsed instanceof Error) {
        offered.push(`${file} (${passphrase === undefined ? 'unusable' : 'wrong passphrase'})`);
        return undefined;
      }
      offered.push(file);
      const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey) : parsed;
      return { type: 'publickey', username: host.user, key };
    });
  }

  if (signal.aborted) throw interruptedError(`connecting to ${display}`, signal.reason);
  const client = new Client();
  let hostKeyError: PideployError | undefined;
  let fingerprint = '';
  let settled = false;

  return await new Promise<OpenedClient>((resolve, reject) => {
    // Connecting starts now; its listeners are attached below, in the same tick.
    const socket = input.stream === undefined ? net.connect({ host: host.hostname, port: host.port }) : undefined;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      timer?.clear();
      signal.removeEventListener('abort', onAbort);
      client.removeAllListeners('ready');
      client.on('error', () => {});
      client.destroy();
      socket?.destroy();
      reject(hostKeyError ?? classifySshError(error, where));
    };
    const onAbort = () => fail(interruptedError(`connecting to ${display}`, signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    timer = pausableTimer(timeoutMs, () => {
      const error = Object.assign(new Error(`no SSH session within ${timeoutMs} ms`), { level: 'client-timeout' });
      fail(error);
    });

    const hostVerifier = (key: Buffer, verify: (valid: boolean) => void): void => {
      fingerprint = sshFingerprint(key);
      const verdict = checkHostKey(knownEntries, lookupNames, key);
      const keyDescription = `${sshKeyType(key)} key ${fingerprint}`;
      for (const note of verdict.status === 'unknown' ? verdict.notes : []) context.reporter.emit({ type: 'log', level: 'debug', message: note, host: host.alias });
      if (verdict.status === 'known') return verify(true);
      if (verdict.status === 'revoked') {
        hostKeyError = new PideployError({
          code: SSH_ERROR_CODES.hostKeyRevoked,
          message: `the host key of ${display} (${keyDescription}) is marked @revoked in ${verdict.entry.file ?? 'known_hosts'}:${verdict.entry.line}`,
          hint: 'do not connect: find out why the key was revoked, and give the host a new key',
        });
        return verify(false);
      }
      if (verdict.status === 'changed') {
        const old = verdict.knownEntries[0] as KnownHostsEntry;
        hostKeyError = new PideployError({
          code: SSH_ERROR_CODES.hostKeyChanged,
          message: `WARNING: the host key of ${display} has CHANGED: it now presents ${keyDescription}, but ${old.file ?? 'known_hosts'}:${old.line} lists ${sshFingerprint(old.key)}. Someone could be eavesdropping on you right now (man-in-the-middle attack), or the host was reinstalled`,
          hint: `if you are sure the host was reinstalled, remove the old key with ${shellJoin(['ssh-keygen', '-R', lookupNames[0] as string, '-f', old.file ?? knownHostsFiles[0] ?? '~/.ssh/known_hosts'])} and connect again`,
        });
        return verify(false);
      }
      const accept = options.acceptNewHostKey === true || host.strictHostKeyChecking === 'accept-new' || host.strictHostKeyChecking === 'no';
      const targetFile = knownHostsFiles[0];
      if (!accept || targetFile === undefined) {
        const other = verdict.otherTypes.length > 0 ? ` (known_hosts has only ${verdict.otherTypes.join(', ')} keys for it)` : '';
        hostKeyError = new PideployError({
          code: SSH_ERROR_CODES.hostKeyUnknown,
          message: `the host key of ${display} is not known${other}: ${keyDescription}`,
          hint: `compare the fingerprint with \`ssh-keygen -lf /etc/ssh/ssh_host_${sshKeyType(key).replace(/^ssh-/u, '').replace(/^ecdsa-sha2-.*/u, 'ecdsa')}_key.pub\` on the host, then rerun with --accept-new-host-key, or add it with: ${shellJoin(['ssh-keyscan', '-p', String(host.port), host.hostname])} >> ${targetFile ?? '~/.ssh/known_hosts'}`,
        });
        return verify(false);
      }
      timer?.pause();
      mkdir(path.dirname(targetFile), { recursive: true, mode: 0o700 })
        .then(() => appendFile(targetFile, formatKnownHostsLine(lookupNames[0] as string, key, { hash: host.hashKnownHosts }), { mode: 0o600 }))
        .then(
          () => {
            timer?.resume();
            context.reporter.emit({ type: 'log', level: 'warn', message: `permanently added the ${keyDescription} of ${display} to ${targetFile}`, host: host.alias });
            verify(true);
          },
          (error: unknown) => {
            timer?.resume();
            hostKeyError = new PideployError({
              code: SSH_ERROR_CODES.hostKeyUnknown,
              message: `cannot write the host key of ${display} to ${targetFile}: ${error instanceof Error ? error.message : String(error)}`,
              hint: 'check that the known_hosts file and its directory are writable',
              cause: error,
            });
            verify(false);
          },
        );
    };

    let methodIndex = 0;
    const authHandler = (_methodsLeft: unknown, _partialSuccess: unknown, next: (method: AnyAuthMethod | false) => void): void => {
      const tryNext = (): void => {
        const method = methods[methodIndex];
        methodIndex += 1;
        if (method === undefined) return next(false);
        method().then(
          (auth) => (auth === undefined ? tryNext() : next(auth)),
          (error: unknown) => fail(error),
        );
      };
      tryNext();
    };

    client.on('ready', () => {
      if (settled) return;
      settled = true;
      timer?.clear();
      signal.removeEventListener('abort', onAbort);
      resolve({ client, fingerprint });
    });
    client.on('error', (error) => fail(error));
    client.on('close', () => fail(Object.assign(new Error('the connection closed during the handshake'), { level: 'protocol' })));

    const config: ConnectConfig = {
      username: host.user,
      readyTimeout: 0,
      keepaliveInterval: keepaliveMs,
      keepaliveCountMax: host.serverAliveCountMax,
      hostVerifier,
      authHandler: authHandler as unknown as ConnectConfig['authHandler'],
      algorithms: {
        serverHostKey: orderHostKeyAlgorithms(knownKeyTypesForHost(knownEntries, lookupNames)) as never,
        // AES-GCM runs in OpenSSL; ssh2's chacha20 fallback is pure JS and several times slower.
        cipher: PREFERRED_CIPHERS as never,
        compress: (options.compress === true ? ['zlib@openssh.com', 'zlib', 'none'] : ['none']) as never,
      },
    };
    if (socket === undefined) {
      client.connect({ ...config, sock: input.stream as never });
      return;
    }
    socket.once('error', (error) => fail(error));
    socket.once('connect', () => {
      if (settled) return;
      socket.setNoDelay(true);
      client.connect({ ...config, sock: coalesceWritesPerTick(socket) as never });
    });
  });
}

class Session implements SessionWithSecretExec {
  #closed = false;
  readonly #closing: Promise<void>[] = [];
  /** The clients (this host's, the ProxyJump hop's) whose connection has ended. */
  readonly #ended = new Set<InstanceType<typeof Client>>();
  #forwards: RemoteForwards | undefined;

  constructor(
    readonly host: ResolvedSshHost,
    readonly display: string,
    readonly hostKeyFingerprint: string,
    private readonly client: InstanceType<typeof Client>,
    private readonly jumpClient: InstanceType<typeof Client> | undefined,
  ) {
    client.on('close', () => {
      this.#closed = true;
    });
    for (const each of [client, jumpClient]) each?.once('close', () => this.#ended.add(each));
    client.on('error', () => {
      // after the handshake, errors surface as failed channel opens / closed channels
    });
  }

  #sudo: Promise<SudoRunner> | undefined;

  sudo(options: CreateSudoOptions = {}): Promise<SudoRunner> {
    if (this.#sudo === undefined) {
      this.#sudo = createSudo(this, options);
      // A failed detection may be retried with other options.
      this.#sudo.catch(() => {
        this.#sudo = undefined;
      });
    }
    return this.#sudo;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #closedError(): PideployError {
    return new PideployError({ code: SSH_ERROR_CODES.connectionFailed, message: `the SSH connection to ${this.display} is closed`, hint: 'connect again', isRetryable: true });
  }

  forwardRemotePort(options: RemoteForwardOptions): Promise<RemotePortForward> {
    if (this.#closed) {
      return Promise.reject(this.#closedError());
    }
    this.#forwards ??= new RemoteForwards(this.client, this.display);
    return this.#forwards.open(options);
  }

  spawn(command: RemoteCommand, options: { readonly signal?: AbortSignal | undefined } = {}): Promise<RemoteProcess> {
    const { line } = remoteCommandLine(command);
    return this.#open(line, options.signal);
  }

  async [SPAWN_WITH_SECRET](command: RemoteCommand, secretLine: Buffer | undefined, options: { readonly signal?: AbortSignal | undefined }): Promise<RemoteProcess> {
    const process = await this.spawn(command, options);
    if (secretLine !== undefined) process.stdin.write(secretLine);
    return process;
  }

  #open(line: string, signal: AbortSignal | undefined): Promise<RemoteProcess> {
    if (signal?.aborted === true) return Promise.reject(interruptedError('the remote command', signal.reason));
    if (this.#closed) {
      return Promise.reject(this.#closedError());
    }
    return new Promise((resolve, reject) => {
      try {
        this.client.exec(line, (error: Error | undefined, channel: ClientChannel) => {
          if (error !== undefined && error !== null) {
            reject(
              new PideployError({
                code: SSH_ERROR_CODES.connectionFailed,
                message: `cannot start a command on ${this.display}: ${error.message}`,
                hint: 'the connection may have dropped; connect again',
                cause: error,
                isRetryable: true,
              }),
            );
            return;
          }
          resolve(remoteProcessFromChannel(channel));
        });
      } catch (error) {
        reject(classifySshError(error, { display: this.display, user: this.host.user, hostname: this.host.hostname, port: this.host.port }));
      }
    });
  }

  exec(command: RemoteCommand, options: ExecOptions & { readonly encoding: 'buffer' }): Promise<ExecResult<Buffer>>;
  exec(command: RemoteCommand, options?: ExecOptions): Promise<ExecResult<string>>;
  async exec(command: RemoteCommand, options: ExecOptions = {}): Promise<ExecResult<string | Buffer>> {
    return this[EXEC_WITH_SECRET](command, undefined, options);
  }

  async [EXEC_WITH_SECRET](
    command: RemoteCommand,
    secretLine: Buffer | undefined,
    options: ExecOptions & { readonly redact?: (text: string) => string },
  ): Promise<ExecResult<string | Buffer>> {
    const { line, argv } = remoteCommandLine(command);
    const process = await this.#open(line, options.signal);
    return collectRemoteProcess(process, argv, { ...options, stdinPrefix: secretLine });
  }

  async close(): Promise<void> {
    if (this.#closing.length === 0) {
      for (const client of [this.client, this.jumpClient]) {
        // A connection that ended (dropped, or the host rebooted) emits no second 'close' to wait for.
        if (client === undefined || this.#ended.has(client)) continue;
        this.#closing.push(
          new Promise<void>((resolve) => {
            const done = setTimeout(() => {
              client.destroy();
              resolve();
            }, 2000);
            done.unref();
            client.once('close', () => {
              clearTimeout(done);
              resolve();
            });
            client.end();
          }),
        );
      }
    }
    await Promise.all(this.#closing);
    this.#closed = true;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The ssh_config files to use and the local identity, shared by the hops of one connect. */
function resolveTarget(target: string | SshTarget, configs: readonly SshConfig[], local: LocalIdentity): ResolvedSshHost {
  const parsed = typeof target === 'string' ? parseSshTarget(target) : target;
  return resolveSshHost(configs, parsed.host, { user: parsed.user, port: parsed.port, local });
}

/**
 * Connects like OpenSSH would: ssh_config (aliases, HostName, User, Port, IdentityFile,
 * IdentitiesOnly, one ProxyJump hop), known_hosts (hashed too; unknown → refused with the
 * fingerprint unless accepting new keys, changed → hard error), agent keys then identity files.
 * Exactly one SSH login (plus one on the jump host); every exec and sudo call reuses it.
 */
export async function connectSsh(target: string | SshTarget, options: ConnectSshOptions, context: PideployContext): Promise<SshSession> {
  const local = options.local ?? currentLocalIdentity();
  const configs = loadSshConfig({ sshConfigFile: options.sshConfigFile, local });
  const host = resolveTarget(target, configs, local);
  const signal = options.signal ?? context.signal;
  for (const warning of host.warnings) context.reporter.emit({ type: 'log', level: 'warn', message: `ssh_config: ${warning}`, host: host.alias });
  const display = `${host.user}@${host.hostname}${host.port === 22 ? '' : `:${host.port}`}`;
  if (host.proxyJump.length > 1) {
    throw new PideployError({
      code: SSH_ERROR_CODES.configInvalid,
      message: `ProxyJump with ${host.proxyJump.length} hops (for ${host.alias}) is not supported yet; one hop is`,
      hint: 'jump through one bastion, or use ProxyJump on the bastion itself',
    });
  }
  const hop = host.proxyJump[0];
  let jump: OpenedClient | undefined;
  let stream: Duplex | undefined;
  if (hop !== undefined) {
    const jumpHost = resolveTarget({ host: hop.host, user: hop.user, port: hop.port }, configs, local);
    jump = await openClient({ host: { ...jumpHost, proxyJump: [] }, options, context, signal });
    const jumpClient = jump.client;
    try {
      stream = await new Promise<Duplex>((resolve, reject) => {
        jumpClient.forwardOut('127.0.0.1', 0, host.hostname, host.port, (error, channel) => (error ? reject(error) : resolve(channel)));
      });
    } catch (error) {
      jumpClient.end();
      throw new PideployError({
        code: SSH_ERROR_CODES.unreachable,
        message: `the jump host ${jumpHost.user}@${jumpHost.hostname} cannot reach ${host.hostname}:${host.port}: ${error instanceof Error ? error.message : String(error)}`,
        hint: 'check the HostName and Port, and that the jump host allows TCP forwarding',
        cause: error,
        isRetryable: true,
      });
    }
  }
  let opened: OpenedClient;
  try {
    opened = await openClient({ host, options, context, signal, stream });
  } catch (error) {
    jump?.client.end();
    throw error;
  }
  context.reporter.emit({ type: 'log', level: 'debug', message: `ssh: connected to ${display} (host key ${opened.fingerprint})`, host: host.alias });
  return new Session(host, display, opened.fingerprint, opened.client, jump?.client);
}
