import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { matchPatternList } from './patterns.js';

/**
 * `known_hosts` parsing and host-key decisions as pure functions (`sshd(8)` "SSH_KNOWN_HOSTS FILE
 * FORMAT"): plain, wildcard, negated, `[host]:port` and hashed (`|1|salt|hmac`) host fields,
 * `@revoked` and `@cert-authority` markers, several keys per host.
 */

/** One key line of a known_hosts file. */
export interface KnownHostsEntry {
  /** `@revoked` refuses the key; `@cert-authority` lines are kept but not used by pideploy. */
  readonly marker?: 'revoked' | 'cert-authority' | undefined;
  /** The host field split at commas (patterns), or empty for a hashed entry. */
  readonly patterns: readonly string[];
  /** For a hashed entry: the salt and the HMAC-SHA1 of the host name under that salt. */
  readonly hashed?: { readonly salt: Buffer; readonly hash: Buffer } | undefined;
  /** Key type as written, e.g. `ssh-ed25519`. */
  readonly keyType: string;
  /** The key blob (decoded base64). */
  readonly key: Buffer;
  /** File and 1-based line, for messages. */
  readonly file?: string | undefined;
  readonly line: number;
}

/** Parses known_hosts text; malformed lines are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string, file?: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  text.split(/\r?\n/u).forEach((rawLine, index) => {
    const trimmed = rawLine.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/u);
    let marker: KnownHostsEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const name = fields.shift();
      if (name === '@revoked') marker = 'revoked';
      else if (name === '@cert-authority') marker = 'cert-authority';
      else return;
    }
    const [hostField, keyType, keyText] = fields;
    if (hostField === undefined || keyType === undefined || keyText === undefined) return;
    const key = Buffer.from(keyText, 'base64');
    if (key.length === 0 || key.toString('base64').replace(/=+$/u, '') !== keyText.replace(/=+$/u, '')) return;
    let hashed: KnownHostsEntry['hashed'];
    let patterns: string[] = [];
    if (hostField.startsWith('|1|')) {
      const [, , saltText, hashText] = hostField.split('|');
      if (saltText === undefined || hashText === undefined) return;
      hashed = { salt: Buffer.from(saltText, 'base64'), hash: Buffer.from(hashText, 'base64') };
      if (hashed.salt.length !== 20 || hashed.hash.length !== 20) return;
    } else {
      patterns = hostField.split(',');
    }
    entries.push({ marker, patterns, hashed, keyType, key, file, line: index + 1 });
  });
  return entries;
}

/** The name OpenSSH looks up in known_hosts: `host` on port 22, else `[host]:port`. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** HMAC-SHA1 of a host name under a salt, as in hashed known_hosts entries. */
function hashHostName(name: string, salt: Buffer): Buffer {
  return createHmac('sha1', salt).update(name).digest();
}

/** The hashed host field (`|1|salt|hmac`) for `name`, with a fresh or given 20-byte salt. */
export function hashKnownHostsName(name: string, salt: Buffer = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${hashHostName(name, salt).toString('base64')}`;
}

/** True when the entry's host field names `name` (already in `[host]:port` form when needed). */
export function knownHostsEntryMatches(entry: KnownHostsEntry, name: string): boolean {
  if (entry.hashed !== undefined) {
    const expected = hashHostName(name, entry.hashed.salt);
    return timingSafeEqual(expected, entry.hashed.hash);
  }
  return matchPatternList(name, entry.patterns, true) === 1;
}

/** The key type (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256` …) named inside an SSH key blob. */
export function sshKeyType(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  if (length > blob.length - 4) return 'unknown';
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** The OpenSSH SHA256 fingerprint of a key blob: `SHA256:` + unpadded base64, as `ssh-keygen -l` prints it. */
export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/u, '')}`;
}

/** The verdict on a presented host key. */
export type HostKeyVerdict =
  | { readonly status: 'known'; readonly entry: KnownHostsEntry }
  | { readonly status: 'revoked'; readonly entry: KnownHostsEntry }
  | { readonly status: 'changed'; readonly knownEntries: readonly KnownHostsEntry[] }
  | { readonly status: 'unknown'; readonly otherTypes: readonly string[]; readonly notes: readonly string[] };

/**
 * Decides about a presented host key like OpenSSH: revoked anywhere → `revoked`; the same blob
 * listed for one of `names` → `known`; another key of the same type listed → `changed`;
 * otherwise `unknown` (with the key types that are known for the host, if any).
 * `@cert-authority` lines are ignored (pideploy does not do host certificates) with a note.
 */
export function checkHostKey(entries: readonly KnownHostsEntry[], names: readonly string[], presented: Buffer): HostKeyVerdict {
  const presentedType = sshKeyType(presented);
  const notes: string[] = [];
  const forHost: KnownHostsEntry[] = [];
  for (const entry of entries) {
    if (entry.marker === 'revoked') {
      if (entry.key.equals(presented)) return { status: 'revoked', entry };
      continue;
    }
    if (!names.some((name) => knownHostsEntryMatches(entry, name))) continue;
    if (entry.marker === 'cert-authority') {
      notes.push(`${entry.file ?? 'known_hosts'}:${entry.line}: @cert-authority entry ignored (host certificates are not supported)`);
      continue;
    }
    forHost.push(entry);
  }
  const same = forHost.find((entry) => entry.key.equals(presented));
  if (same !== undefined) return { status: 'known', entry: same };
  const sameType = forHost.filter((entry) => sshKeyType(entry.key) === presentedType);
  if (sameType.length > 0) return { status: 'changed', knownEntries: sameType };
  return { status: 'unknown', otherTypes: [...new Set(forHost.map((entry) => entry.keyType))], notes };
}

/** Key types known for a host, to put first in the host key algorithm offer (as OpenSSH does). */
export function knownKeyTypesForHost(entries: readonly KnownHostsEntry[], names: readonly string[]): string[] {
  const types = new Set<string>();
  for (const entry of entries) {
    if (entry.marker !== undefined) continue;
    if (names.some((name) => knownHostsEntryMatches(entry, name))) types.add(sshKeyType(entry.key));
  }
  return [...types];
}

/** A known_hosts line for `name` and key blob, hashed when asked (`HashKnownHosts yes`). */
export function formatKnownHostsLine(name: string, blob: Buffer, options: { readonly hash?: boolean | undefined } = {}): string {
  const hostField = options.hash === true ? hashKnownHostsName(name) : name;
  return `${hostField} ${sshKeyType(blob)} ${blob.toString('base64')}\n`;
}
