import path from 'node:path';
import { PideployError } from '@pideploy/core';

/** Error codes raised by @pideploy/keys (stable: scripts may match on them). */
export const KEY_ERROR_CODES = {
  /** A key's name, directory, owner or mode cannot be installed as given. */
  invalid: 'PIDEPLOY_KEY_INVALID',
  /** A key's file could not be read, or its command failed. */
  sourceFailed: 'PIDEPLOY_KEY_SOURCE_FAILED',
  /** The host refused or failed the upload (an unknown user or group, a full disk …). */
  uploadFailed: 'PIDEPLOY_KEY_UPLOAD_FAILED',
} as const;

/** When a key is uploaded during a deployment (as colmena's `uploadAt`). */
export type KeyUploadAt = 'pre-activation' | 'post-activation';

/** Where a key's content comes from, on the machine that deploys. */
export type KeySource =
  /** A file (absolute path), read as bytes. */
  | { readonly file: string }
  /** A command (argv, no shell) whose stdout is the content, e.g. `["pass", "show", "pi/wifi"]`. */
  | { readonly command: readonly string[] };

/** One secret file to place on a host, outside the Nix store. */
export interface KeySpec {
  /** The file name on the host (no `/`): the key lands at `destDir/name`. */
  readonly name: string;
  readonly source: KeySource;
  /** Absolute directory on the host (default `/run/keys`, NixOS's tmpfs for keys: gone at a reboot). */
  readonly destDir: string;
  /** Owner on the host (default root); must exist there when the key is uploaded. */
  readonly user: string;
  /** Group on the host (default root). */
  readonly group: string;
  /** Octal mode, e.g. `0600` (the default) or `0640`. */
  readonly permissions: string;
  /** Before the activation (default: services of the new system find it at start) or after it (for a user the new system creates). */
  readonly uploadAt: KeyUploadAt;
}

/** The defaults of a key's optional fields (colmena's and NixOps's, for `/run/keys`). */
export const KEY_DEFAULTS = { destDir: '/run/keys', user: 'root', group: 'root', permissions: '0600', uploadAt: 'pre-activation' } as const;

/** A key name: a plain file name (letters, digits, `._@+-`, not starting with a dot). */
export const KEY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/u;
/** A user or group name as useradd accepts it (or a numeric id). */
export const KEY_OWNER_PATTERN = /^(?:[A-Za-z_][A-Za-z0-9._-]*\$?|[0-9]+)$/u;
/** An octal mode of three or four digits (no setuid/setgid/sticky bits: `0`–`7` for the owner, group and others). */
export const KEY_PERMISSIONS_PATTERN = /^0?[0-7]{3}$/u;

/** Where the key lands on the host. */
export function keyPath(key: Pick<KeySpec, 'destDir' | 'name'>): string {
  return path.posix.join(key.destDir, key.name);
}

/**
 * Whether `file` can be where a key was put (pure): an absolute, normal path (no `.`/`..`, no
 * trailing `/`) ending in a key name. What a key file to remove must be, whoever lists it.
 */
export function isKeyFilePath(file: string): boolean {
  return path.posix.isAbsolute(file) && !file.endsWith('/') && path.posix.normalize(file) === file && KEY_NAME_PATTERN.test(path.posix.basename(file));
}

/**
 * Why a key cannot be installed as given, or undefined when it can. Pure: what the host then
 * still checks is that the user and group exist.
 */
export function keySpecProblem(key: KeySpec): string | undefined {
  if (!KEY_NAME_PATTERN.test(key.name)) return `key name "${key.name}" is not a plain file name (letters, digits and ._@+- only, not starting with a dot)`;
  if (!key.destDir.startsWith('/')) return `key ${key.name}: destDir "${key.destDir}" is not an absolute path`;
  if (key.destDir.split('/').some((segment) => segment === '.' || segment === '..')) return `key ${key.name}: destDir "${key.destDir}" has a . or .. segment`;
  if (/[\0\n]/u.test(key.destDir)) return `key ${key.name}: destDir has a line break or NUL byte`;
  if (key.destDir.replace(/\/+$/u, '') === '/nix/store' || key.destDir.startsWith('/nix/store/')) return `key ${key.name}: destDir ${key.destDir} is in the Nix store, which is world-readable`;
  if (!KEY_OWNER_PATTERN.test(key.user)) return `key ${key.name}: user "${key.user}" is not a user name`;
  if (!KEY_OWNER_PATTERN.test(key.group)) return `key ${key.name}: group "${key.group}" is not a group name`;
  if (!KEY_PERMISSIONS_PATTERN.test(key.permissions)) return `key ${key.name}: permissions "${key.permissions}" is not an octal mode like 0600 or 0640`;
  if ('command' in key.source && key.source.command.length === 0) return `key ${key.name}: its command is empty`;
  return undefined;
}

/**
 * Checks a host's keys before anything is read or uploaded: each must be installable
 * ({@link keySpecProblem}) and no two may land on the same path.
 * @throws PideployError `PIDEPLOY_KEY_INVALID`
 */
export function checkKeySpecs(host: string, keys: readonly KeySpec[]): void {
  const seen = new Map<string, string>();
  for (const key of keys) {
    const problem = keySpecProblem(key);
    if (problem !== undefined) {
      throw new PideployError({ code: KEY_ERROR_CODES.invalid, message: `${host}: ${problem}`, hint: 'fix the key in pideploy.json (see its schema: hosts.<host>.keys)' });
    }
    const where = keyPath(key);
    const other = seen.get(where);
    if (other !== undefined) {
      throw new PideployError({ code: KEY_ERROR_CODES.invalid, message: `${host}: keys ${other} and ${key.name} both land at ${where}`, hint: 'give one of them another destDir' });
    }
    seen.set(where, key.name);
  }
}
