import { PideployError } from '@pideploy/core';

/** Error codes raised by @pideploy/ssh (stable: scripts may match on them). */
export const SSH_ERROR_CODES = {
  /** The server accepted none of the keys offered. */
  authFailed: 'PIDEPLOY_SSH_AUTH_FAILED',
  /** TCP connection refused, no route, DNS failure, connection reset before the handshake. */
  unreachable: 'PIDEPLOY_SSH_UNREACHABLE',
  /** Connecting or the handshake took longer than the connect timeout; or keepalives went unanswered. */
  timeout: 'PIDEPLOY_SSH_TIMEOUT',
  /** The host's key is not in known_hosts. */
  hostKeyUnknown: 'PIDEPLOY_SSH_HOST_KEY_UNKNOWN',
  /** known_hosts lists another key of the same type for the host. */
  hostKeyChanged: 'PIDEPLOY_SSH_HOST_KEY_CHANGED',
  /** known_hosts marks the presented key `@revoked`. */
  hostKeyRevoked: 'PIDEPLOY_SSH_HOST_KEY_REVOKED',
  /** Any other SSH protocol failure, or the connection dropped. */
  connectionFailed: 'PIDEPLOY_SSH_CONNECTION_FAILED',
  /** An ssh_config value pideploy cannot use. */
  configInvalid: 'PIDEPLOY_SSH_CONFIG_INVALID',
  /** A remote command exited non-zero (when asked to reject on that). */
  remoteCommandFailed: 'PIDEPLOY_REMOTE_COMMAND_FAILED',
  /** Three wrong sudo passwords (or one wrong non-interactive one). */
  sudoPasswordWrong: 'PIDEPLOY_SUDO_PASSWORD_WRONG',
  /** sudo needs a password and none can be asked for. */
  sudoPasswordRequired: 'PIDEPLOY_SUDO_PASSWORD_REQUIRED',
  /** The login user may not use sudo, or sudo is missing on the host. */
  sudoNotAllowed: 'PIDEPLOY_SUDO_NOT_ALLOWED',
  /** The server refused a remote port forward (`AllowTcpForwarding no`, port in use). */
  forwardRefused: 'PIDEPLOY_SSH_FORWARD_REFUSED',
} as const;

/** Node socket error codes that mean "the host cannot be reached (now)". */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EADDRNOTAVAIL', 'EPIPE', 'EHOSTDOWN']);

/** What a connection attempt was about, for messages. */
export interface ConnectionDescription {
  /** `deploy@pi1 (10.250.1.2:22)` style text. */
  readonly display: string;
  /** Login user. */
  readonly user: string;
  /** Host name or address. */
  readonly hostname: string;
  /** Port. */
  readonly port: number;
  /** What the client offered for authentication, for the auth-failure message. */
  readonly offered?: readonly string[] | undefined;
}

/**
 * Turns an error from the socket or ssh2 into a classified PideployError (unreachable, timeout,
 * auth failed, connection failed). Pure: decides on `code`, `level` and `message` only.
 */
export function classifySshError(error: unknown, where: ConnectionDescription): PideployError {
  if (PideployError.isInstance(error)) return error;
  const record = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; level?: unknown; message?: unknown };
  const code = typeof record.code === 'string' ? record.code : undefined;
  const level = typeof record.level === 'string' ? record.level : undefined;
  const text = typeof record.message === 'string' ? record.message : String(error);
  if (level === 'client-authentication' || /authentication methods failed/iu.test(text)) {
    const offered = where.offered === undefined || where.offered.length === 0 ? 'no keys at all' : where.offered.join(', ');
    return new PideployError({
      code: SSH_ERROR_CODES.authFailed,
      message: `SSH login to ${where.display} failed: the server accepted none of the keys offered (${offered})`,
      hint: `check that the public key is in ~${where.user}/.ssh/authorized_keys on the host, that the user is right, and that IdentityFile / the agent (SSH_AUTH_SOCK) hold the matching private key`,
      cause: error,
    });
  }
  if (code === 'ETIMEDOUT' || level === 'client-timeout' || /timed out/iu.test(text)) {
    return new PideployError({
      code: SSH_ERROR_CODES.timeout,
      message: `SSH connection to ${where.display} timed out (${text})`,
      hint: 'check that the host is up and reachable on that port; raise ConnectTimeout for slow links',
      cause: error,
      isRetryable: true,
    });
  }
  if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    const why =
      code === 'ECONNREFUSED'
        ? `nothing accepts connections on port ${where.port}`
        : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
          ? `the name ${where.hostname} does not resolve`
          : code === 'ECONNRESET' || code === 'EPIPE'
            ? 'the connection was reset'
            : 'there is no route to it';
    return new PideployError({
      code: SSH_ERROR_CODES.unreachable,
      message: `cannot reach ${where.display}: ${why} (${code})`,
      hint: 'check the host name, port and network; is sshd running on the host?',
      cause: error,
      isRetryable: true,
    });
  }
  return new PideployError({
    code: SSH_ERROR_CODES.connectionFailed,
    message: `SSH connection to ${where.display} failed: ${text}`,
    hint: 'rerun with --verbose; if it persists, check the host with `ssh -v`',
    cause: error,
    isRetryable: level === 'client-socket' || /lost|closed/iu.test(text),
  });
}

/** The error for an aborted operation (Ctrl-C): exit code 130 in the CLI. */
export function interruptedError(what: string, cause?: unknown): PideployError {
  return new PideployError({ code: 'PIDEPLOY_INTERRUPTED', message: `${what} was interrupted`, hint: 'run the command again to finish what was left', cause });
}
